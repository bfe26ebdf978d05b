"""Association resources against the real node on loopback, with a raw-socket peer (issue 10)."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE

from dicom_node.guard import MAX_CONTROL_PDU
from dicom_node.node import Node
from tests.conftest import RecordingDispatcher, node_settings
from tests.factories import DERMOSCOPY_SOP_CLASS, dermoscopy_dataset
from tests.rawpeer import associate, connect, read_until_closed

A_ABORT = b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x06"  # service-provider, invalid PDU parameter value


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Node]:
    """A node with short limits: 1 s to send the A-ASSOCIATE-RQ, 1 s grace per PDU, 2 per host."""
    settings = node_settings(
        tmp_path, association_request_timeout_s=1.0, network_timeout_s=1.0, max_associations_per_host=2,
    )
    with Node(settings, RecordingDispatcher()) as node:
        yield node


def _store_from(port: int, bind: str) -> int:
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(DERMOSCOPY_SOP_CLASS, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="DERMNODE", bind_address=(bind, 0))
    assert assoc.is_established, f"an association from {bind} was refused"
    try:
        return int(assoc.send_c_store(dermoscopy_dataset()).Status)
    finally:
        assoc.release()


def test_a_connection_that_sends_nothing_is_closed(guarded: Node) -> None:
    with connect(guarded.port) as conn:
        assert read_until_closed(conn, timeout=10) == b""  # closed by ARTIM, well before the 10 s bound


def test_a_trickled_pdu_is_aborted(guarded: Node) -> None:
    with associate(guarded.port) as conn:
        conn.sendall(b"\x04\x00")  # the start of a P-DATA-TF header, and then nothing more
        assert read_until_closed(conn, timeout=10) == A_ABORT


def test_a_pdu_trickled_byte_by_byte_is_aborted(guarded: Node) -> None:
    """One byte every 0.2 s never trips an idle timeout (1 s); the per-PDU rate limit ends it."""
    with associate(guarded.port) as conn:
        header = struct.pack(">BBL", 0x04, 0, 1000)
        for i in range(50):  # 10 s at most: the test stops by itself
            try:
                conn.sendall(header[i : i + 1] if i < len(header) else b"\x00")
            except OSError:
                break
            conn.settimeout(0.2)  # paces the attacker; the assertion below waits on the node
            try:
                reply = conn.recv(64)
            except TimeoutError:
                continue
            assert reply == A_ABORT, reply
            break
        else:
            pytest.fail("a trickled PDU held the association for 10 s")


def test_an_association_has_a_total_time_budget(tmp_path: Path) -> None:
    settings = node_settings(tmp_path, association_max_s=1.0)
    with Node(settings, RecordingDispatcher()) as node:
        ae = AE(ae_title="PYSCU")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", node.port, ae_title="DERMNODE")
        assert assoc.is_established
        for _ in range(100):  # busy, never idle: C-ECHO after C-ECHO, 20 s at most
            rsp = assoc.send_c_echo()
            if not assoc.is_established or rsp is None or "Status" not in rsp:
                break
            threading.Event().wait(0.2)
        else:
            pytest.fail("the association outlived its time budget")
        assoc.join(10)  # the requestor's reactor ends once it has seen the abort
        assert not assoc.is_established


def test_an_oversize_pdu_is_aborted_without_being_read(guarded: Node) -> None:
    with associate(guarded.port) as conn:
        conn.sendall(struct.pack(">BBL", 0x04, 0, 256 << 20) + b"\x00" * 4096)  # 256 MiB announced
        assert read_until_closed(conn, timeout=10) == A_ABORT
    assert _store_from(guarded.port, "127.0.0.1") == 0x0000  # the node is unharmed


def test_an_oversize_associate_request_is_aborted(guarded: Node) -> None:
    with connect(guarded.port) as conn:
        conn.sendall(struct.pack(">BBL", 0x01, 0, MAX_CONTROL_PDU + 1))
        assert read_until_closed(conn, timeout=10) == A_ABORT


def test_one_host_cannot_take_every_slot(guarded: Node) -> None:
    held = [connect(guarded.port, "127.0.0.1") for _ in range(2)]  # 127.0.0.1's share: idle connections
    try:
        with connect(guarded.port, "127.0.0.1") as third:
            assert read_until_closed(third, timeout=10) == b""  # closed on connect
        assert _store_from(guarded.port, "127.0.0.2") == 0x0000  # another host is still served
    finally:
        for conn in held:
            conn.close()


def test_a_pdu_at_the_agreed_maximum_is_accepted(tmp_path: Path) -> None:
    settings = node_settings(tmp_path, max_pdu_size=16384)
    with Node(settings, RecordingDispatcher()) as node:
        ae = AE(ae_title="PYSCU")
        ae.maximum_pdu_size = 16384
        ae.add_requested_context(DERMOSCOPY_SOP_CLASS, "1.2.840.10008.1.2.1")
        assoc = ae.associate("127.0.0.1", node.port, ae_title="DERMNODE")
        assert assoc.is_established
        try:
            assert assoc.send_c_store(dermoscopy_dataset()).Status == 0x0000
        finally:
            assoc.release()

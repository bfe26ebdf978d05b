"""DICOM audit messages (PS3.15 A.5) as RFC 5424 syslog over UDP, received by a real socket on loopback, from a
real node: start, a rejected association, a stored study, results sent, a peer change, stop."""

from __future__ import annotations

import base64
import contextlib
import logging
import queue
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from pydicom import dcmread

from dermnode.kernel.settings import AuditSettings
from dermnode.ops.audit import Auditor
from dermnode.ops.side import OpsSide
from dicom_node.ledger import DeliveryState, Ledger, StudyState
from dicom_node.node import AssociationAttempt, Node
from dicom_node.policy import RejectReason
from tests import dcmtk
from tests.conftest import RecordingDispatcher, node_settings
from tests.dicom_node.test_tls import PKI, pki  # noqa: F401  (the module's test PKI fixture)
from tests.factories import write_study
from tests.scu import c_store

_HEADER = re.compile(rb"^<85>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+ dermnode \d+ IHE\+RFC-3881 - \xef\xbb\xbf")


def check_structure(msg: ET.Element) -> None:
    """The element order of the DICOM audit message schema (PS3.15 A.5.1) and its value rules used here."""
    tags = [child.tag for child in msg]
    n = tags.count("ActiveParticipant")
    objects = len(tags) - n - 2
    assert n >= 1 and tags == ["EventIdentification", *["ActiveParticipant"] * n, "AuditSourceIdentification",
                               *["ParticipantObjectIdentification"] * objects], tags
    ident = [child.tag for child in msg[0]]
    assert ident[0] == "EventID" and set(ident[1:]) <= {"EventTypeCode", "EventOutcomeDescription"}, ident
    for code in msg.iter():
        if code.get("csd-code") is not None and code.tag != "AuditSourceTypeCode":
            assert code.get("codeSystemName") and code.get("originalText") is not None, code.attrib
    for obj in msg.findall("ParticipantObjectIdentification"):
        inner = [child.tag for child in obj]
        assert inner[:2] == ["ParticipantObjectIDTypeCode", "ParticipantObjectName"], inner
        assert inner[2:] == sorted(inner[2:], key=["ParticipantObjectDetail", "ParticipantObjectDescription"].index)
        for detail in obj.findall("ParticipantObjectDetail"):
            base64.b64decode(detail.get("value", ""), validate=True)


class Receiver:
    """A syslog receiver on an ephemeral UDP port of loopback."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(60)  # a safety net: each message is awaited, not timed
        self.port = int(self.sock.getsockname()[1])

    def next(self) -> ET.Element:
        data = self.sock.recv(65535)
        header = _HEADER.match(data)
        assert header is not None, data[:120]
        msg = ET.fromstring(data[header.end():])
        check_structure(msg)
        return msg

    def until(self, event_id: str, action: str) -> ET.Element:
        while True:
            msg = self.next()
            ident = msg.find("EventIdentification")
            assert ident is not None
            code = ident.find("EventID")
            if code is not None and code.get("csd-code") == event_id and ident.get("EventActionCode") == action:
                return msg


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.sock.close()


def test_audit_messages_reach_the_syslog_receiver(tmp_path: Path, receiver: Receiver) -> None:
    settings = node_settings(tmp_path, audit={"syslog_host": "127.0.0.1", "syslog_port": receiver.port})
    node = Node(settings, RecordingDispatcher())
    ops = OpsSide(node)
    node.start()
    ops.start()
    try:
        start = receiver.until("110100", "E")
        assert start.find("EventIdentification/EventTypeCode").get("csd-code") == "110120"  # type: ignore[union-attr]
        source = start.find("AuditSourceIdentification")
        assert source is not None and source.get("AuditSourceID") == "DERMNODE"
        assert [child.tag for child in start][-1] == "AuditSourceIdentification"

        assert dcmtk.echoscu(node.port, calling="INTRUDER").returncode != 0
        alert = receiver.until("110113", "E")
        assert alert.find("EventIdentification/EventTypeCode").get("csd-code") == "110126"  # type: ignore[union-attr]
        requestor = [p for p in alert.findall("ActiveParticipant") if p.get("UserIsRequestor") == "true"]
        assert [(p.get("UserID"), p.get("NetworkAccessPointID")) for p in requestor] == [("INTRUDER", "127.0.0.1")]
        [detail] = alert.findall("ParticipantObjectIdentification/ParticipantObjectDetail")
        assert b"not on the allow-list" in base64.b64decode(detail.get("value", ""))

        [path] = write_study(tmp_path / "src", n_images=1)
        ds = dcmread(path)
        assert c_store(node.port, ds) == 0x0000
        stored = receiver.until("110104", "C")
        [study] = [o for o in stored.findall("ParticipantObjectIdentification")
                   if o.get("ParticipantObjectTypeCodeRole") == "3"]
        assert study.get("ParticipantObjectID") == str(ds.StudyInstanceUID)
        sop = study.find("ParticipantObjectDescription/SOPClass")
        assert sop is not None and sop.get("UID") == str(ds.SOPClassUID) and sop.get("NumberOfInstances") == "1"
        tags = [child.tag for child in stored]
        assert tags.index("AuditSourceIdentification") < tags.index("ParticipantObjectIdentification")

        uid = str(ds.StudyInstanceUID)
        node.ledger.transition(uid, StudyState.DELIVERING)
        node.ledger.record_delivery(uid, 1, "PACS@127.0.0.1:4242", DeliveryState.DELIVERED, 1, "delivered")
        sent = receiver.until("110104", "R")
        assert sent.find("EventIdentification").get("EventOutcomeIndicator") == "0"  # type: ignore[union-attr]
        destination = [p for p in sent.findall("ActiveParticipant") if p.get("UserIsRequestor") == "false"]
        assert [(p.get("UserID"), p.get("NetworkAccessPointID")) for p in destination] == [("PACS", "127.0.0.1")]

        node.registry.remove_peer("PYSCU", node.configured, "admin-api@127.0.0.1")
        change = receiver.until("110113", "E")
        assert change.find("EventIdentification/EventTypeCode").get("csd-code") == "110128"  # type: ignore[union-attr]
    finally:
        ops.stop()
        node.stop()
    stop = receiver.until("110100", "E")
    assert stop.find("EventIdentification/EventTypeCode").get("csd-code") == "110121"  # type: ignore[union-attr]


def test_audit_messages_over_tls_with_octet_counting(tmp_path: Path, pki: PKI) -> None:  # noqa: F811
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.server_crt, pki.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)
    frames: queue.Queue[bytes] = queue.Queue()

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            stream = tls.makefile("rb")
            while length := stream.read(1):
                while not length.endswith(b" "):
                    length += stream.read(1)
                frames.put(stream.read(int(length)))

    receiver = threading.Thread(target=serve, daemon=True)
    receiver.start()
    settings = AuditSettings(syslog_host="127.0.0.1", syslog_port=listener.getsockname()[1], transport="tls",
                             ca_certificates=pki.ca)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    auditor = Auditor(settings, "DERMNODE", ledger)
    try:
        auditor.application_activity(started=True)
        auditor.on_association(AssociationAttempt("INTRUDER", "DERMNODE", "127.0.0.1", False,
                                                  RejectReason.CALLING_AE_NOT_RECOGNISED, "not on the allow-list"))
    finally:
        auditor.close()
    receiver.join(timeout=60)
    listener.close()
    ids = []
    for frame in (frames.get(timeout=60), frames.get(timeout=60)):
        header = _HEADER.match(frame)
        assert header is not None, frame[:120]
        msg = ET.fromstring(frame[header.end():])
        check_structure(msg)
        ids.append(msg.find("EventIdentification/EventID").get("csd-code"))  # type: ignore[union-attr]
    assert ids == ["110100", "110113"]
    ledger.close()


def test_a_tls_receiver_with_an_unknown_certificate_gets_nothing(
    tmp_path: Path, pki: PKI, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.server_crt, pki.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)

    def refuse() -> None:
        for _ in range(2):  # the first try and the one reconnection
            conn, _ = listener.accept()
            with contextlib.suppress(OSError), server_ctx.wrap_socket(conn, server_side=True):
                pass

    threading.Thread(target=refuse, daemon=True).start()
    settings = AuditSettings(syslog_host="127.0.0.1", syslog_port=listener.getsockname()[1], transport="tls")
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    auditor = Auditor(settings, "DERMNODE", ledger)  # system CAs: the test CA is unknown
    with caplog.at_level(logging.WARNING, logger="dermnode.audit"):
        auditor.application_activity(started=True)
        auditor.close()
    listener.close()
    ledger.close()
    assert "not sent" in caplog.text and "CERTIFICATE_VERIFY_FAILED" in caplog.text

"""Runtime peers and destinations (registry), reload and drain of a real node."""

from __future__ import annotations

import threading
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE

from dermnode.kernel.addresses import Address
from dermnode.kernel.settings import Peer
from dicom_node.ledger import Ledger
from dicom_node.node import Node
from dicom_node.registry import Registry
from tests.conftest import RecordingDispatcher, node_settings
from tests.factories import DERMOSCOPY_SOP_CLASS, write_study


def test_configured_entries_removed_stay_removed_until_added_again(tmp_path: Path) -> None:
    settings = node_settings(tmp_path, destinations=["PACS@127.0.0.1:104", "sender"])
    Ledger(settings.ledger_path).close()
    registry = Registry(settings.ledger_path)
    registry.remove_peer("STORESCU", settings, "test")
    registry.add_peer(Peer(ae_title="MODALITY1", host="10.0.0.7"), "test")
    registry.remove_destination("PACS", settings, "test")
    registry.add_destination(Address("ARCHIVE", "10.0.0.9", 11112), "test")
    registry.close()
    again = Registry(settings.ledger_path)  # a restart
    effective = again.effective(settings)
    assert [p.ae_title for p in effective.allowed_peers] == ["PYSCU", "MODALITY1"]
    assert effective.destinations == ("sender", Address("ARCHIVE", "10.0.0.9", 11112))
    again.add_peer(Peer(ae_title="STORESCU"), "test")
    assert "STORESCU" in [p.ae_title for p in again.peers(settings)]
    again.close()


def test_reload_applies_peers_but_keeps_the_listening_port(tmp_path: Path) -> None:
    with Node(node_settings(tmp_path), RecordingDispatcher()) as node:
        port = node.port
        new = node_settings(tmp_path, allowed_peers=["OTHER"], port=port + 1)
        applied = node.reload(new)
        assert [p.ae_title for p in applied.allowed_peers] == ["OTHER"]
        assert node.port == port and applied.port == node.configured.port


def test_drain_refuses_new_associations_and_finishes_the_open_one(tmp_path: Path) -> None:
    [path] = write_study(tmp_path / "src", n_images=1)
    ds = dcmread(path)
    node = Node(node_settings(tmp_path), RecordingDispatcher()).start()
    try:
        ae = AE(ae_title="PYSCU")
        ae.add_requested_context(DERMOSCOPY_SOP_CLASS, [str(ds.file_meta.TransferSyntaxUID)])
        ae.add_requested_context("1.2.840.10008.1.1")
        port = node.port
        open_assoc = ae.associate("127.0.0.1", port, ae_title="DERMNODE")
        assert open_assoc.is_established
        left: list[int] = []
        draining = threading.Thread(target=lambda: left.append(node.drain(timeout_s=60)))
        draining.start()
        assert node.stopped_listening.wait(timeout=60)
        late = ae.associate("127.0.0.1", port, ae_title="DERMNODE")
        assert not late.is_established  # no longer listening
        assert int(open_assoc.send_c_store(ds).Status) == 0x0000  # the store in flight completes
        open_assoc.release()
        draining.join(timeout=60)
        assert left == [0]
        assert node.ledger.study(str(ds.StudyInstanceUID)) is not None
    finally:
        node.stop()

"""The node as a PACS sees it: C-ECHO, association policy, C-STORE statuses, spool and ledger."""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, generate_uid
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config

from dermnode.kernel.errors import LedgerError
from dicom_node.contexts import ACCEPTED_TRANSFER_SYNTAXES
from dicom_node.ledger import StudyState
from dicom_node.node import Node
from tests import dcmtk
from tests.conftest import RecordingDispatcher
from tests.factories import DERMOSCOPY_SOP_CLASS, dermoscopy_dataset, write_study
from tests.scu import c_store


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until true or ``timeout``: for effects that follow a reply the peer already has."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_c_echo_succeeds(node: Node) -> None:
    result = dcmtk.echoscu(node.port)
    assert result.returncode == 0, result.stderr


def test_unknown_calling_ae_is_rejected_with_advice(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dermnode.node"):
        result = dcmtk.echoscu(node.port, calling="INTRUDER")
    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stderr + result.stdout
    assert "--allow INTRUDER@127.0.0.1" in caplog.text
    assert wait_until(lambda: any("INTRUDER" in e.detail for e in node.ledger.events()))  # audited after the reject


def test_wrong_called_ae_is_rejected(node: Node) -> None:
    result = dcmtk.echoscu(node.port, called="SOMEONEELSE")
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stderr + result.stdout


def test_host_pinned_peer_from_another_host_is_rejected(tmp_path: Path, recording: RecordingDispatcher) -> None:
    from tests.conftest import node_settings

    settings = node_settings(tmp_path, allowed_peers=["STORESCU@10.9.9.9"])
    with Node(settings, recording) as n:
        assert dcmtk.echoscu(n.port).returncode != 0


def test_store_study_spools_records_and_queues_once_complete(
    node: Node, recording: RecordingDispatcher, tmp_path: Path
) -> None:
    files = write_study(tmp_path / "study", n_images=3)
    result = dcmtk.storescu(node.port, files)
    assert result.returncode == 0, result.stderr
    assert recording.submitted.wait(15), "the complete study was never queued"
    job = recording.jobs[0]
    study = node.ledger.study(job.study_uid)
    assert study is not None and study.instance_count == 3
    assert study.state == StudyState.QUEUED
    assert job.generation == 1
    for inst in node.ledger.instances(job.study_uid):
        assert inst.path.is_file() and inst.path.parent.parent == node.spool.root
        assert inst.sop_class_uid == DERMOSCOPY_SOP_CLASS
    assert len(recording.jobs) == 1


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless])
def test_compressed_instances_are_accepted(node: Node, syntax: str) -> None:
    ds = dermoscopy_dataset()
    ds.compress(syntax)
    assert c_store(node.port, ds) == 0x0000
    assert node.ledger.instances(ds.StudyInstanceUID)[0].transfer_syntax == syntax


def test_jpeg_baseline_from_dcmtk_is_accepted(node: Node, tmp_path: Path) -> None:
    src = write_study(tmp_path / "raw", n_images=1)[0]
    jpeg = tmp_path / "jpeg.dcm"
    made = dcmtk.run([dcmtk.tool("dcmcjpeg"), "+eb", str(src), str(jpeg)])
    assert made.returncode == 0, made.stderr
    result = dcmtk.storescu(node.port, [jpeg])
    assert result.returncode == 0, result.stderr
    study_uid = dermoscopy_uid(jpeg)
    assert node.ledger.instances(study_uid)[0].transfer_syntax == "1.2.840.10008.1.2.4.50"


def test_jpeg_lossless_from_dcmtk_is_accepted_and_decodes_exactly(node: Node, tmp_path: Path) -> None:
    from pydicom import dcmread

    from inference.outputs.pixels import rgb_pixels

    src = write_study(tmp_path / "raw", n_images=1)[0]
    lossless = tmp_path / "lossless.dcm"
    made = dcmtk.run([dcmtk.tool("dcmcjpeg"), "+e1", str(src), str(lossless)])  # JPEG Lossless SV1
    assert made.returncode == 0, made.stderr
    assert c_store(node.port, dcmread(lossless)) == 0x0000
    (instance,) = node.ledger.instances(dermoscopy_uid(lossless))
    assert instance.transfer_syntax == "1.2.840.10008.1.2.4.70"
    assert np.array_equal(rgb_pixels(dcmread(instance.path)), rgb_pixels(dcmread(src)))  # GDCM, no GPL decoder


def dermoscopy_uid(path: Path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def test_missing_study_uid_gets_a900_and_the_node_keeps_serving(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    bad = dermoscopy_dataset()
    del bad.StudyInstanceUID
    with caplog.at_level(logging.ERROR, logger="dermnode.node"):
        assert c_store(node.port, bad) == 0xA900
    assert "StudyInstanceUID is missing" in caplog.text
    assert bad.SOPInstanceUID in caplog.text
    good = dermoscopy_dataset()
    assert c_store(node.port, good) == 0x0000
    assert dcmtk.echoscu(node.port).returncode == 0


def test_truncated_pixel_data_gets_c000(node: Node) -> None:
    bad = dermoscopy_dataset()
    bad.PixelData = bad.PixelData[: len(bad.PixelData) // 2]
    assert c_store(node.port, bad) == 0xC000
    assert node.ledger.studies() == []
    rejected = [e for e in node.ledger.events() if e.kind == "instance-rejected"]
    assert rejected and rejected[0].sop_instance_uid == bad.SOPInstanceUID


def test_corrupt_jpeg_stream_gets_c000(node: Node) -> None:
    ds = dermoscopy_dataset()
    ds.compress(JPEGLSLossless)
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\xff\xd8not a jpeg-ls stream" + b"\x00" * 50])
    assert c_store(node.port, ds) == 0xC000


def test_dataset_sop_class_differing_from_request_gets_a900(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With its documented STORE_SEND_CHUNKED_DATASET switch, pynetdicom sends a Part 10 file as it is and
    # takes the request's SOP class from the file meta: a file whose meta says dermoscopy but whose data
    # set says Basic Text SR makes exactly this mismatch.
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)
    path = tmp_path / "mismatch.dcm"
    dermoscopy_dataset().save_as(path, enforce_file_format=True)
    raw = path.read_bytes()
    in_dataset = raw.index(DERMOSCOPY_SOP_CLASS.encode(), raw.index(DERMOSCOPY_SOP_CLASS.encode()) + 1)
    basic_text_sr = b"1.2.840.10008.5.1.4.1.1.88.11\x00"  # same even length (30) as the dermoscopy UID
    path.write_bytes(raw[:in_dataset] + basic_text_sr + raw[in_dataset + len(basic_text_sr):])
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(DERMOSCOPY_SOP_CLASS, ACCEPTED_TRANSFER_SYNTAXES[0])
    assoc = ae.associate("127.0.0.1", node.port, ae_title="DERMNODE")
    assert assoc.is_established
    try:
        rsp = assoc.send_c_store(path)
        assert rsp is not None and rsp.Status == 0xA900
    finally:
        assoc.release()
    assert node.ledger.studies() == []


def test_unsupported_sop_class_is_not_negotiated(node: Node) -> None:
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2")  # CT Image Storage
    assoc = ae.associate("127.0.0.1", node.port, ae_title="DERMNODE")
    assert not assoc.is_established  # no acceptable presentation context: aborted


def test_resent_instance_replaces_and_late_instance_reopens_study(
    node: Node, recording: RecordingDispatcher, tmp_path: Path
) -> None:
    study_uid = generate_uid()
    files = write_study(tmp_path / "s", n_images=1, study_uid=study_uid)
    assert dcmtk.storescu(node.port, files).returncode == 0
    assert recording.submitted.wait(15)
    recording.submitted.clear()
    node.ledger.transition(study_uid, StudyState.DELIVERED)  # as the worker would
    late = write_study(tmp_path / "late", n_images=1, study_uid=study_uid)
    assert dcmtk.storescu(node.port, [*files, *late]).returncode == 0
    assert recording.submitted.wait(15), "the re-opened study was not queued again"
    assert [j.generation for j in recording.jobs] == [1, 2]
    study = node.ledger.study(study_uid)
    assert study is not None and study.instance_count == 2
    kinds = [e.kind for e in node.ledger.events(study_uid)]
    assert "study-reopened" in kinds and "instance-replaced" in kinds


def _broken_audit(*args: object) -> None:
    raise LedgerError("the study ledger is broken (test)")


def test_a_failing_audit_still_rejects_the_association(
    node: Node, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(node.ledger, "record_rejection", _broken_audit)
    with caplog.at_level(logging.ERROR, logger="dermnode.node"):
        result = dcmtk.echoscu(node.port, calling="INTRUDER")
        assert result.returncode != 0
        assert "Calling AE Title Not Recognized" in result.stderr + result.stdout
        assert wait_until(lambda: "could not audit the refusal of an association" in caplog.text)
    assert dcmtk.echoscu(node.port).returncode == 0  # and the node keeps serving


def test_a_failing_audit_still_refuses_the_instance_with_its_status(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node.ledger, "record_rejection", _broken_audit)
    bad = dermoscopy_dataset()
    bad.PixelData = bad.PixelData[:100]
    assert c_store(node.port, bad) == 0xC000


def test_a_failing_ledger_write_is_out_of_resources_not_success(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node.ledger, "record_instance", _broken_audit)
    monkeypatch.setattr(node.ledger, "record_rejection", _broken_audit)
    assert c_store(node.port, dermoscopy_dataset()) == 0xA700


def test_spool_and_ledger_are_private(node: Node) -> None:
    ds = dermoscopy_dataset()
    assert c_store(node.port, ds) == 0x0000
    [instance] = node.ledger.instances(ds.StudyInstanceUID)
    data = node.settings.data_dir
    for folder in (data, node.settings.spool_dir, instance.path.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for file in (instance.path, node.settings.ledger_path):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def test_below_the_disk_watermark_new_instances_get_a700(tmp_path: Path, recording: RecordingDispatcher) -> None:
    from tests.conftest import node_settings

    with Node(node_settings(tmp_path, min_free_disk_mb=1 << 40), recording) as n:  # more than any disk has
        ds = dermoscopy_dataset()
        assert c_store(n.port, ds) == 0xA700
        assert n.ledger.studies() == []
        [refusal] = [e for e in n.ledger.events() if e.kind == "instance-rejected"]
        assert refusal.sop_instance_uid == ds.SOPInstanceUID and "below the watermark" in refusal.detail


def test_restart_removes_spooled_files_no_ledger_row_records(tmp_path: Path, recording: RecordingDispatcher) -> None:
    from tests.conftest import node_settings

    settings = node_settings(tmp_path)
    ds = dermoscopy_dataset()
    with Node(settings, recording) as n:
        assert c_store(n.port, ds) == 0x0000
        [kept] = n.ledger.instances(ds.StudyInstanceUID)
    stray = kept.path.parent / "1.2.3.4.dcm"  # renamed into the spool, then killed before the ledger commit
    stray.write_bytes(kept.path.read_bytes())
    with Node(settings, recording):
        pass
    assert kept.path.exists() and not stray.exists()

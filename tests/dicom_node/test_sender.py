from __future__ import annotations

from pathlib import Path

from dicom_node.sender import StoreSender
from tests import dcmtk
from workers.jobs import Address


def _object(tmp_path: Path) -> Path:
    """A small SR-class object is not needed here: any SOP class we propose works; use a SEG-less SR."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp_path / "sr.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_retries_with_exponential_backoff_then_reports_failure(tmp_path: Path) -> None:
    sleeps: list[float] = []
    sender = StoreSender("DERMNODE", attempts=3, backoff_s=0.5, timeout_s=5, sleep=sleeps.append)
    result = sender.send(Address("NOBODY", "127.0.0.1", dcmtk.free_port()), [_object(tmp_path)])
    assert not result.delivered and result.attempts == 3
    assert "no association with NOBODY@127.0.0.1" in result.detail
    assert sleeps == [0.5, 1.0]


def test_delivers_to_storescp(tmp_path: Path) -> None:
    scp = dcmtk.StoreSCP(tmp_path / "in")
    try:
        result = StoreSender("DERMNODE", attempts=2, backoff_s=0).send(
            Address(scp.ae_title, "127.0.0.1", scp.port), [_object(tmp_path)])
        assert result.delivered and result.attempts == 1
        assert len(scp.wait_for(1)) == 1
    finally:
        scp.stop()

"""Orthanc as the real PACS: storescu → Orthanc → (Lua auto-routing) → dermnode → SEG + SR → Orthanc.

The loop a hospital would set up: the modality sends a dermoscopy study to the PACS; the PACS
forwards each dermoscopy image to the node (keeping its own copy); the node analyses the study
and stores the results back into the same study on the PACS. The test passes when Orthanc holds,
in the one study, the two original DMS images, a lesion SEG, an attention SEG and an attention-levels
SEG per image, and an SR that references both images.

Orthanc is kept to loopback by its configuration (see :mod:`tests.orthanc`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests import dcmtk
from tests.factories import DERMOSCOPY_SOP_CLASS, write_study
from tests.orthanc import OrthancPACS, orthanc_binary
from tests.processes import DermnodeProcess

pytestmark = pytest.mark.orthanc

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
ROUND_TRIP_TIMEOUT_S = 120.0


@dataclass
class StudyContent:
    """What Orthanc holds for one study, read back as DICOM."""

    images: list[Dataset]
    segs: list[Dataset]
    reports: list[Dataset]

    @property
    def lesion_segs(self) -> list[Dataset]:
        return [d for d in self.segs if d.ContentLabel == "LESION"]

    @property
    def attention_segs(self) -> list[Dataset]:
        return [d for d in self.segs if d.SegmentationType == "FRACTIONAL"]

    @property
    def attention_level_segs(self) -> list[Dataset]:
        return [d for d in self.segs if d.ContentLabel == "ATTENTION_LEVELS"]


def _content(pacs: OrthancPACS, study_id: str) -> StudyContent:
    content = StudyContent([], [], [])
    for series in pacs.get(f"/studies/{study_id}/series"):
        modality = series["MainDicomTags"].get("Modality")
        bucket = {"DMS": content.images, "XC": content.images, "SEG": content.segs, "SR": content.reports}.get(
            modality
        )
        if bucket is None:
            continue
        bucket.extend(pacs.instance_file(i) for i in series["Instances"])
    return content


def _referenced_sops(report: Dataset) -> set[str]:
    """SOP Instance UIDs listed in the SR's Current Requested Procedure Evidence Sequence."""
    return {
        str(sop.ReferencedSOPInstanceUID)
        for study in report.get("CurrentRequestedProcedureEvidenceSequence", [])
        for series in study.ReferencedSeriesSequence
        for sop in series.ReferencedSOPSequence
    }


def _round_trip_done(content: StudyContent, sent: set[str]) -> bool:
    images = {str(d.SOPInstanceUID) for d in content.images}
    lesion_sources = {
        str(ref.ReferencedSOPInstanceUID)
        for seg in content.lesion_segs
        for ref in seg.SourceImageSequence
    } if content.lesion_segs else set()
    return (
        images == sent
        and sent <= lesion_sources
        and len(content.attention_segs) >= len(sent)
        and len(content.attention_level_segs) >= len(sent)
        and any(sent <= _referenced_sops(sr) for sr in content.reports)
    )


@pytest.fixture
def node_and_pacs(tmp_path: Path) -> Iterator[tuple[DermnodeProcess, OrthancPACS]]:
    binary = orthanc_binary()
    node_port = dcmtk.free_port()
    pacs = OrthancPACS(tmp_path / "orthanc", node_port)
    pacs.directory.mkdir()
    node = DermnodeProcess([
        "serve", "--port", str(node_port), "--bind", "127.0.0.1", "--data-dir", str(tmp_path / "node"),
        "--allow", f"ORTHANC@127.0.0.1:{pacs.dicom_port}", "--destination", "sender", "--quiet-period", "1",
    ])
    try:
        node.wait_listening()
        pacs.start(binary)
        yield node, pacs
    finally:
        pacs.stop()
        node.stop()


def test_orthanc_routes_study_to_dermnode_and_stores_seg_and_sr(
    tmp_path: Path, node_and_pacs: tuple[DermnodeProcess, OrthancPACS]
) -> None:
    node, pacs = node_and_pacs
    files = write_study(tmp_path / "study", n_images=2)
    originals = [dcmread(f) for f in files]
    study_uid = str(originals[0].StudyInstanceUID)
    sent_sops = {str(d.SOPInstanceUID) for d in originals}

    sent = dcmtk.storescu(pacs.dicom_port, files, called="ORTHANC")
    assert sent.returncode == 0, f"storescu → Orthanc failed:\n{sent.stdout}{sent.stderr}\n{pacs.logs()}"

    content = StudyContent([], [], [])
    deadline = time.monotonic() + ROUND_TRIP_TIMEOUT_S
    while time.monotonic() < deadline:
        study_id = pacs.study_id(study_uid)
        if study_id is not None:
            content = _content(pacs, study_id)
            if _round_trip_done(content, sent_sops):
                break
        time.sleep(1.0)
    else:
        pytest.fail(
            f"after {ROUND_TRIP_TIMEOUT_S:.0f} s Orthanc holds {len(content.images)} image(s), "
            f"{len(content.lesion_segs)} lesion SEG, {len(content.attention_segs)} attention SEG, "
            f"{len(content.reports)} SR for study {study_uid}\n--- dermnode ---\n{node.logs()[-6000:]}\n"
            f"--- Orthanc ---\n{pacs.logs()}"
        )

    # The originals stayed in the PACS, unchanged in identity and SOP class.
    assert {str(d.SOPClassUID) for d in content.images} == {DERMOSCOPY_SOP_CLASS}
    # Every output is in the study, marked, and of the class the conformance statement names.
    outputs = content.segs + content.reports
    for ds in outputs:
        assert str(ds.StudyInstanceUID) == study_uid
        assert str(ds.PatientID) == str(originals[0].PatientID)
        assert "not for diagnostic use" in str(ds.SeriesDescription).lower()
    assert {str(d.SOPClassUID) for d in content.segs} == {SEG_SOP_CLASS}
    assert all(d.ContentTemplateSequence[0].TemplateIdentifier == "1500" for d in content.reports)
    # One series per kind of output, apart from the images.
    assert len({str(d.SeriesInstanceUID) for d in content.lesion_segs}) == 1
    assert len({str(d.SeriesInstanceUID) for d in content.attention_segs}) == 1
    assert len({str(d.SeriesInstanceUID) for d in content.attention_level_segs}) == 1
    assert len({str(d.SeriesInstanceUID) for d in content.reports}) == 1
    node.wait_for_log(r"delivered \d+ object\(s\) to ORTHANC@127\.0\.0\.1", timeout=30)

"""Orthanc as the real PACS: storescu → Orthanc → (Lua auto-routing) → dermnode → SEG + SR → Orthanc.

The loop a hospital would set up: the modality sends a dermoscopy study to the PACS; the PACS
forwards each dermoscopy image to the node (keeping its own copy); the node analyses the study
and stores the results back into the same study on the PACS. The test passes when Orthanc holds,
in the one study, the two original DMS images, a lesion SEG, an attention SEG and an attention-levels
SEG per image, and an SR that references both images.

Orthanc 1.10 cannot bind to one interface. It is kept to loopback by its configuration: the REST
API refuses remote hosts (``RemoteAccessAllowed`` false) and the DICOM server accepts C-ECHO and
C-STORE only from the two AE titles it knows, each pinned to 127.0.0.1 (``DicomCheckModalityHost``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests import dcmtk
from tests.factories import DERMOSCOPY_SOP_CLASS, write_study
from tests.processes import DermnodeProcess

pytestmark = pytest.mark.orthanc

ORTHANC = Path("/usr/sbin/Orthanc")
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
ROUND_TRIP_TIMEOUT_S = 120.0

# Forward what a modality sent (dermoscopy DMS, legacy VL photographic XC), never our own outputs
# (SEG, SR): a loop otherwise. The original stays in Orthanc (no Delete()).
AUTO_ROUTING_LUA = """
function OnStoredInstance(instanceId, tags, metadata, origin)
  local modality = tags['Modality']
  if (modality == 'DMS' or modality == 'XC') and origin['RemoteAet'] ~= 'DERMNODE' then
    SendToModality(instanceId, 'dermnode')
  end
end
"""


def _orthanc_binary() -> str:
    found = str(ORTHANC) if ORTHANC.exists() else shutil.which("Orthanc")
    if not found:
        pytest.skip("Orthanc is not installed (apt-get install orthanc); the PACS integration test needs it")
    return found


@dataclass
class OrthancPACS:
    """An Orthanc process with its own configuration, storage and ports, all under ``directory``."""

    directory: Path
    node_port: int

    def __post_init__(self) -> None:
        self.dicom_port = dcmtk.free_port()
        self.http_port = dcmtk.free_port()
        self.log = self.directory / "orthanc.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        lua = self.directory / "autorouting.lua"
        lua.write_text(AUTO_ROUTING_LUA, encoding="utf-8")
        return {
            "Name": "dermnode-integration",
            "StorageDirectory": str(self.directory / "storage"),
            "IndexDirectory": str(self.directory / "index"),
            "Plugins": [],
            "LuaScripts": [str(lua)],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": "ORTHANC",
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": True,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomModalities": {
                "dermnode": ["DERMNODE", "127.0.0.1", self.node_port],
                "modality": ["STORESCU", "127.0.0.1", 104],
            },
            # Not promiscuous: Orthanc 1.10 (DCMTK 3.6.7) knows the dermoscopy, SEG and SR storage
            # classes, so the test shows that a PACS in its standard configuration takes our outputs.
            "UnknownSopClassAccepted": False,
            "AcceptedTransferSyntaxes": ["1.2.840.10008.1.*"],
            # Our outputs have deterministic UIDs: a re-analysis replaces them.
            "OverwriteInstances": True,
            # Lua's association to dermnode closes 1 s after its last C-STORE, so the study completes.
            "DicomAssociationCloseDelay": 1,
            "DicomScuTimeout": 30,
            "SaveJobs": False,
            "ConcurrentJobs": 1,
            "StableAge": 60,
            "ExecuteLuaEnabled": False,
            "RestApiWriteToFileSystemEnabled": False,
        }

    def start(self, binary: str) -> None:
        path = self.directory / "orthanc.json"
        path.write_text(json.dumps(self.config(), indent=2), encoding="utf-8")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "--verbose", str(path)], stdout=log, stderr=subprocess.STDOUT,
                env=dcmtk.env(), cwd=self.directory,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"Orthanc exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if self.get("/system").get("DicomAet") == "ORTHANC":
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"Orthanc's REST API did not answer within 30 s:\n{self.logs()}")

    def _open(self, path: str, body: bytes | None = None) -> bytes:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body)
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())

    def get(self, path: str) -> Any:
        return json.loads(self._open(path))

    def post(self, path: str, body: str) -> Any:
        return json.loads(self._open(path, body.encode("utf-8")))

    def instance_file(self, instance_id: str) -> Dataset:
        return dcmread(BytesIO(self._open(f"/instances/{instance_id}/file")))

    def study_id(self, study_uid: str) -> str | None:
        found = [m["ID"] for m in self.post("/tools/lookup", study_uid) if m.get("Type") == "Study"]
        return found[0] if found else None

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-8000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


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
    binary = _orthanc_binary()
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

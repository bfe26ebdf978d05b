"""An Orthanc PACS process for tests: own configuration, storage and ephemeral ports, loopback only.

Orthanc 1.10 cannot bind to one interface. It is kept to loopback by its configuration: the REST
API refuses remote hosts (``RemoteAccessAllowed`` false) and the DICOM server accepts C-ECHO and
C-STORE only from the two AE titles it knows, each pinned to 127.0.0.1 (``DicomCheckModalityHost``).
With ``dicomweb`` the Debian ``orthanc-dicomweb`` plugin serves DICOMweb under ``/dicom-web/``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests import dcmtk

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")

# Forward what a modality sent, never the node's outputs: the script docker/compose.yaml's Orthanc runs.
AUTO_ROUTING_LUA = (Path(__file__).resolve().parents[1] / "docker" / "orthanc" / "autorouting.lua").read_text(
    encoding="utf-8"
)


def orthanc_binary() -> str:
    found = str(ORTHANC) if ORTHANC.exists() else shutil.which("Orthanc")
    if not found:
        pytest.skip("Orthanc is not installed (apt-get install orthanc); the PACS integration test needs it")
    return found


@dataclass
class OrthancPACS:
    """An Orthanc process with its own configuration, storage and ports, all under ``directory``."""

    directory: Path
    node_port: int
    dicomweb: bool = False

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
            **(self._dicomweb_config() if self.dicomweb else {}),
        }

    def _dicomweb_config(self) -> dict[str, Any]:
        if not DICOMWEB_PLUGIN.exists():
            pytest.skip(f"Orthanc's DICOMweb plugin is missing ({DICOMWEB_PLUGIN}): apt-get install orthanc-dicomweb")
        return {
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False},
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



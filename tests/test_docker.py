"""docker/: the compose loop (PACS → node → results in the viewer) is wired as the tests run it.

No Docker daemon is needed: these checks read the files. What the containers do is what the tests
prove with the same pieces on loopback: Orthanc's routing script and DICOMweb plugin
(tests/integration, tests/viewer), OHIF's version and app-config.js (tests/viewer).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.orthanc import AUTO_ROUTING_LUA, DICOMWEB_PLUGIN
from tests.viewer.ohif import APP_CONFIG, OHIF_VERSION

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def test_compose_runs_pacs_node_worker_and_viewer() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"redis", "node", "worker", "orthanc", "ohif"} <= set(services)
    assert services["orthanc"]["build"]["context"] == "orthanc"
    assert services["ohif"]["build"]["context"] == "ohif"
    assert services["node"]["environment"]["DERMNODE_DESTINATIONS"] == "ORTHANC@orthanc:4242"
    # Workers share nothing with the node but the broker and the worker API: no data volume.
    assert services["node"]["volumes"] == ["dermnode-data:/data"]
    assert services["node"]["environment"]["DERMNODE_WORKER_API_URL"] == "http://node:11180"
    for name in ("worker", "gpu-worker"):
        assert "volumes" not in services[name] and "DERMNODE_DESTINATIONS" not in services[name]["environment"]
    assert "ORTHANC" in services["node"]["environment"]["DERMNODE_ALLOW"].split(",")
    for service in services.values():  # no service is published beyond the host itself
        assert all(str(p).startswith("127.0.0.1:") for p in service.get("ports", []))


def test_orthanc_routes_to_the_node_and_serves_dicomweb() -> None:
    config = json.loads((DOCKER / "orthanc" / "orthanc.json").read_text(encoding="utf-8"))
    assert config["DicomModalities"]["dermnode"] == ["DERMNODE", "node", 11112]
    assert config["DicomAet"] == "ORTHANC" and config["DicomPort"] == 4242
    assert config["Plugins"] == [str(DICOMWEB_PLUGIN)]
    assert config["DicomWeb"]["Enable"] and config["DicomWeb"]["Root"] == "/dicom-web/"
    assert "SendToModality(instanceId, 'dermnode')" in AUTO_ROUTING_LUA
    nginx = (DOCKER / "ohif" / "nginx.conf").read_text(encoding="utf-8")
    assert "proxy_pass http://orthanc:8042/dicom-web/;" in nginx


def test_ohif_image_uses_the_tested_version_and_configuration() -> None:
    dockerfile = (DOCKER / "ohif" / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG OHIF_VERSION={OHIF_VERSION}" in dockerfile
    assert "COPY app-config.js /usr/share/nginx/html/app-config.js" in dockerfile
    setup = (Path(__file__).resolve().parent / "viewer" / "setup.sh").read_text(encoding="utf-8")
    assert re.search(rf"^OHIF_VERSION={re.escape(OHIF_VERSION)}\b", setup, re.MULTILINE)
    assert "'1.2.840.10008.5.1.4.1.1.77.1.7'" in APP_CONFIG.read_text(encoding="utf-8")

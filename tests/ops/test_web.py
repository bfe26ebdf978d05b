"""The HTTP side against a real node: health, metrics after real associations, the admin API (token, peers
applied at once to real associations, destinations and C-ECHO against a real DCMTK storescp, resend)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE

from dicom_node.ledger import StudyState
from dicom_node.registry import Registry
from tests import dcmtk
from tests.factories import write_study
from tests.ops.conftest import TOKEN, Running
from tests.scu import c_store


def _echo_accepted(port: int, calling: str) -> bool:
    ae = AE(ae_title=calling)
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="DERMNODE")
    accepted = bool(assoc.is_established)
    if accepted:
        assoc.release()
    return accepted


def test_health_and_readiness(running: Running) -> None:
    with running.client(token=None) as http:
        health = http.get("/healthz")
        assert health.status_code == 200, health.text
        assert set(health.json()["checks"]) == {"ledger", "spool"}
        assert http.get("/readyz").json()["listening"] is True
        running.node.drain(timeout_s=5)
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["listening"] is False


def test_health_fails_below_the_spool_watermark(running: Running) -> None:
    running.node.configured = running.node.configured.model_copy(update={"spool_min_free_mb": 1e12})
    running.node.refresh()
    with running.client(token=None) as http:
        health = http.get("/healthz")
    assert health.status_code == 503
    assert "purge old studies" in health.json()["checks"]["spool"]["detail"]


def test_metrics_count_associations_stores_and_studies(running: Running, tmp_path: Path) -> None:
    assert not _echo_accepted(running.node.port, "INTRUDER")
    [path] = write_study(tmp_path / "src", n_images=1)
    assert c_store(running.node.port, dcmread(path)) == 0x0000
    running.trail.poll()
    with running.client(token=None) as http:
        text = http.get("/metrics").text
    assert 'dermnode_associations_total{reason="calling_ae_not_recognised",result="rejected"} 1.0' in text
    assert 'dermnode_associations_total{reason="",result="accepted"} 1.0' in text
    assert "dermnode_instances_received_total 1.0" in text
    assert 'dermnode_studies{state="receiving"} 1.0' in text
    assert 'dermnode_model_info{dermnode_classifier="1.1.0"} 1.0' in text
    assert 'dermnode_queue_depth{queue="delivery"} 0.0' in text


@pytest.mark.parametrize("token", [None, "wrong"])
def test_the_admin_api_needs_the_token(running: Running, token: str | None) -> None:
    with running.client(token=token) as http:
        for method, path in [("GET", "/api/peers"), ("POST", "/api/peers"), ("DELETE", "/api/peers/STORESCU"),
                             ("GET", "/api/studies"), ("POST", "/api/destinations/X/echo")]:
            response = http.request(method, path)
            assert response.status_code == 401, (method, path)
            assert "Bearer" in response.json()["error"]


def test_peers_change_at_once_persist_and_are_audited(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    port = running.node.port
    assert not _echo_accepted(port, "MODALITY1")
    with caplog.at_level(logging.DEBUG), running.client() as http:
        added = http.post("/api/peers", json={"ae_title": "MODALITY1", "host": "127.0.0.1", "port": 4100})
        assert added.status_code == 201, added.text
        assert {"ae_title": "MODALITY1", "host": "127.0.0.1", "port": 4100} in http.get("/api/peers").json()
        assert _echo_accepted(port, "MODALITY1")
        assert http.post("/api/peers", json={"ae_title": "BAD\\AE"}).status_code == 400
        assert http.delete("/api/peers/MODALITY1").status_code == 204
        assert not _echo_accepted(port, "MODALITY1")
        assert http.delete("/api/peers/STORESCU").status_code == 204  # a configured peer, removed for good
        assert http.delete("/api/peers/NOBODY").status_code == 404
    assert TOKEN not in caplog.text
    registry = Registry(running.node.settings.ledger_path)  # as after a restart
    try:
        assert {p.ae_title for p in registry.peers(running.node.configured)} == {"PYSCU"}
    finally:
        registry.close()
    kinds = [(e.kind, e.detail) for e in running.node.ledger.events() if e.kind.startswith("peer-")]
    assert [k for k, _ in kinds] == ["peer-added", "peer-removed", "peer-removed"]
    assert all('"by": "admin-api@127.0.0.1"' in d for _, d in kinds)


def test_destinations_and_c_echo(running: Running, tmp_path: Path) -> None:
    scp = dcmtk.StoreSCP(tmp_path / "pacs", ae_title="PACS")
    try:
        with running.client() as http:
            added = http.post("/api/destinations", json={"ae_title": "PACS", "host": "127.0.0.1", "port": scp.port})
            assert added.status_code == 201, added.text
            assert running.node.destinations.resolve("STORESCU")[0].port == scp.port  # applied at once
            echo = http.post("/api/destinations/PACS/echo")
            assert echo.status_code == 200 and echo.json()["ok"] is True, echo.text
            [dest] = http.get("/api/destinations").json()
            assert dest["last_echo"]["ok"] is True
            assert http.post("/api/destinations/NOBODY/echo").status_code == 404
    finally:
        scp.stop()
    with running.client() as http:
        down = http.post("/api/destinations/PACS/echo").json()
        assert down["ok"] is False and "no association" in down["detail"]
        assert http.delete("/api/destinations/PACS").status_code == 204
        assert http.get("/api/destinations").json() == []


def test_studies_and_resend(running: Running, tmp_path: Path) -> None:
    [path] = write_study(tmp_path / "src", n_images=1)
    ds = dcmread(path)
    assert c_store(running.node.port, ds) == 0x0000
    uid = str(ds.StudyInstanceUID)
    with running.client() as http:
        [study] = http.get("/api/studies").json()
        assert study["study_uid"] == uid
        assert http.post(f"/api/studies/{uid}/resend").status_code == 409  # still receiving
        running.node.ledger.transition(uid, StudyState.FAILED, reason="delivery failed: PACS down")
        resent = http.post(f"/api/studies/{uid}/resend")
        assert resent.status_code == 202 and resent.json()["state"] == "complete"
        assert http.post("/api/studies/1.2.3.4/resend").status_code == 404
        trail = http.get(f"/api/studies/{uid}").json()["events"]
    reasons = [e["detail"].get("reason") for e in trail if e["kind"] == "study-complete"]
    assert "resend requested by admin-api@127.0.0.1" in reasons

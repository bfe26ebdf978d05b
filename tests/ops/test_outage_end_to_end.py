"""The PACS-administrator story end to end, with real processes: storescu → dermnode serve (embedded worker,
real models, HTTP side) → a destination that is down until the retry period is over → the study fails →
the administrator points the node at the PACS that came back and resends, from the CLI → SR + SEG arrive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread

from tests import dcmtk
from tests.e2e import check_outputs, expected_objects
from tests.factories import write_study
from tests.processes import DermnodeProcess

pytestmark = pytest.mark.e2e

TOKEN = "e2e-token-5d1c"


def _cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dermnode.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120)


def test_failed_delivery_is_resent_after_the_outage(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    config = tmp_path / "dermnode.yaml"
    config.write_text("send_backoff_s: 0.2\nsend_backoff_max_s: 0.5\nsend_retry_period_s: 2\n")
    down = f"PACS@127.0.0.1:{dcmtk.free_port()}"
    node = DermnodeProcess(
        ["serve", "--config", str(config), "--port", "0", "--bind", "127.0.0.1", "--data-dir", str(data_dir),
         "--allow", "STORESCU", "--destination", down, "--quiet-period", "1", "--http-port", "0"],
        env={"DERMNODE_ADMIN_TOKEN": TOKEN},
    )
    scp: dcmtk.StoreSCP | None = None
    try:
        port = node.wait_listening()
        files = write_study(tmp_path / "study", n_images=1)
        study_uid = str(dcmread(files[0]).StudyInstanceUID)
        assert dcmtk.storescu(port, files).returncode == 0
        node.wait_for_log(rf"delivery of study {study_uid} to {down} failed after \d+ attempts")
        assert f"{study_uid}  failed" in _cli("studies", data_dir=data_dir).stdout

        scp = dcmtk.StoreSCP(tmp_path / "pacs", ae_title="PACS")  # the PACS is back, on a new port
        assert _cli("destinations", "remove", "PACS", data_dir=data_dir).returncode == 0
        assert _cli("destinations", "add", f"PACS@127.0.0.1:{scp.port}", data_dir=data_dir).returncode == 0
        assert _cli("echo", "PACS", data_dir=data_dir).returncode == 0
        resent = _cli("resend", study_uid, data_dir=data_dir)
        assert resent.returncode == 0, resent.stderr
        received = scp.wait_for(expected_objects(1), timeout=180)
        check_outputs(received, 1, study_uid)
        node.wait_for_log(rf"delivered \d+ object\(s\) to PACS@127.0.0.1:{scp.port}")
        http_port = int(node.logs().split("dermnode HTTP on http://127.0.0.1:")[1].split()[0])
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            study = http.get(f"/api/studies/{study_uid}").json()
            metrics = http.get("/metrics").text
        kinds = [e["kind"] for e in study["events"]]
        assert "delivery-failed" in kinds and kinds[-1] == "study-delivered", kinds
        assert f'dermnode_delivery_failures_total{{destination="{down}"}} 1.0' in metrics
    finally:
        if scp is not None:
            scp.stop()
        assert node.stop() == 0, node.logs()

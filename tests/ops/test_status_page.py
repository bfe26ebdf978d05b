"""The status page in Debian's headless chromium, driven by puppeteer-core (tests/browser/): sign in with the
token, a failed study with its audit trail, peers, refusals, C-ECHO of a real DCMTK storescp, resend."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from dermnode.kernel.addresses import Address
from dicom_node.ledger import StudyState
from tests import dcmtk
from tests.conftest import RecordingDispatcher
from tests.factories import write_study
from tests.ops.conftest import TOKEN, Running
from tests.scu import c_store

BROWSER = Path(__file__).resolve().parents[1] / "browser"


def test_status_page_in_headless_chromium(running: Running, tmp_path: Path) -> None:
    if not (BROWSER / "node_modules" / "puppeteer-core").is_dir() or not shutil.which("node"):
        pytest.skip("puppeteer-core is not installed: (cd tests/browser && npm install)")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium is not installed: apt-get install -y chromium")
    [path] = write_study(tmp_path / "src", n_images=1)
    ds = dcmread(path)
    assert c_store(running.node.port, ds) == 0x0000
    uid = str(ds.StudyInstanceUID)
    running.node.ledger.transition(uid, StudyState.FAILED, reason="delivery failed: PACS@127.0.0.1:4242 <down>")
    assert dcmtk.echoscu(running.node.port, calling="INTRUDER").returncode != 0
    scp = dcmtk.StoreSCP(tmp_path / "pacs", ae_title="PACS")
    try:
        running.node.registry.add_destination(Address("PACS", "127.0.0.1", scp.port), "test")
        running.node.refresh()
        result = subprocess.run(["node", str(BROWSER / "status_page.mjs"), running.base, TOKEN, uid, "PACS"],
                                capture_output=True, text=True, timeout=240, cwd=BROWSER)
    finally:
        scp.stop()
    assert result.returncode == 0, result.stderr
    page = json.loads(result.stdout)
    assert page["loginShown"] and page["wrongTokenRefused"]
    [cookie] = page["cookies"]
    assert cookie["httpOnly"] and TOKEN not in cookie["value"]  # a session value derived from the token
    assert page["stateBefore"] == "failed"
    assert page["peers"] == ["STORESCU", "PYSCU"]
    assert any("INTRUDER" in r and "not on the allow-list" in r for r in page["refusals"])
    assert any("instance-stored" in line for line in page["trail"])
    assert any("&lt;down&gt;" not in line and "<down>" in line for line in page["trail"])  # escaped, shown as text
    assert page["echoMessage"].startswith("C-ECHO PACS@127.0.0.1") and "succeeded" in page["echoMessage"]
    assert "ok" in page["echoCell"]
    assert page["resendMessage"] == f"study {uid} will be analysed and delivered again"
    assert page["stateAfter"] in ("complete", "queued") and not page["resendButtonAfter"]
    dispatcher = running.node.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher) and dispatcher.submitted.wait(timeout=60)
    assert [job.study_uid for job in dispatcher.jobs] == [uid]  # the node queued the resent study

"""``dermnode peers|destinations|echo|resend`` on a real ledger, C-ECHO against a real DCMTK storescp; and
``dermnode serve`` as a process: HTTP side up, SIGHUP reloads the peers, SIGTERM drains and exits cleanly."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from dermnode.cli import main
from dicom_node.ledger import Ledger, ReceivedInstance, StudyState
from tests import dcmtk
from tests.processes import DermnodeProcess


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.sqlite3")


def test_peers_add_list_remove_are_persisted_and_audited(
    tmp_path: Path, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert main(["peers", "add", "MODALITY1@10.0.0.7:104", *data]) == 0
    assert main(["peers", "list", *data]) == 0
    assert "MODALITY1\t10.0.0.7\t104" in capsys.readouterr().out
    assert main(["peers", "remove", "MODALITY1", *data]) == 0
    assert main(["peers", "remove", "MODALITY1", *data]) == 2
    assert "'MODALITY1' is not an allowed peer" in capsys.readouterr().err
    assert main(["peers", "add", "BAD\\AE", *data]) == 2
    assert "not a valid AE title" in capsys.readouterr().err
    kinds = [e.kind for e in ledger.events() if e.kind.startswith("peer-")]
    assert kinds == ["peer-added", "peer-removed"]
    assert all('"by": "cli:' in e.detail for e in ledger.events() if e.kind.startswith("peer-"))


def test_admin_commands_refuse_a_data_dir_without_a_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["peers", "list"], ["destinations", "list"], ["resend", "1.2.3"]):
        assert main([*argv, "--data-dir", str(tmp_path / "typo")]) == 2
        assert "no ledger at" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def test_echo_a_destination_by_ae_title_and_record_it(
    tmp_path: Path, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path)]
    scp = dcmtk.StoreSCP(tmp_path / "pacs", ae_title="PACS")
    try:
        assert main(["destinations", "add", f"PACS@127.0.0.1:{scp.port}", *data]) == 0
        assert main(["echo", "PACS", *data]) == 0
        assert "C-ECHO succeeded" in capsys.readouterr().out
    finally:
        scp.stop()
    assert main(["echo", "PACS", *data]) == 1
    assert "no association" in capsys.readouterr().out
    assert main(["destinations", "list", *data]) == 0
    assert "last C-ECHO failed" in capsys.readouterr().out
    assert main(["echo", "NOBODY", *data]) == 2


def test_resend_queues_a_failed_study_again(tmp_path: Path, ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    ledger.record_instance(ReceivedInstance("1.2.3.4", "1.2.3", "1.2.3.5", "1.2", "1.2.840.10008.1.2.1",
                                            tmp_path / "x.dcm", "STORESCU", "127.0.0.1"))
    ledger.transition("1.2.3", StudyState.FAILED, reason="delivery failed: PACS down")
    assert main(["resend", "1.2.3", "--data-dir", str(tmp_path)]) == 0
    assert ledger.study("1.2.3").state == StudyState.COMPLETE  # type: ignore[union-attr]
    assert main(["resend", "1.2.3", "--data-dir", str(tmp_path)]) == 2
    assert "not finished" in capsys.readouterr().err


def test_admin_commands_import_no_torch() -> None:
    code = (
        "import sys; from dermnode.cli import build_parser; import dermnode.cli.admin, dicom_node.registry, "
        "dicom_node.verification, dermnode.ops.web, dermnode.ops.side; "
        "[build_parser().parse_args(a) for a in (['peers', 'list'], ['echo', 'X'], ['resend', '1.2'])]; "
        "print('torch' in sys.modules, 'monai' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.e2e
def test_serve_reloads_peers_on_sighup_and_drains_on_sigterm(tmp_path: Path) -> None:
    pong = subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True, text=True).stdout
    if pong.strip() != "PONG":
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    config = tmp_path / "dermnode.yaml"
    config.write_text("allowed_peers: [STORESCU]\n")
    node = DermnodeProcess(
        ["serve", "--config", str(config), "--data-dir", str(tmp_path / "data"), "--port", "0", "--bind",
         "127.0.0.1", "--broker", "redis://127.0.0.1:6379/15", "--http-port", "0", "--log-format", "json"],
        env={"DERMNODE_ADMIN_TOKEN": "tok-123456"},
    )
    try:
        port = node.wait_listening()
        node.wait_for_log(r"dermnode HTTP on http://127\.0\.0\.1:\d+")
        match = re.search(r"dermnode HTTP on (http://127\.0\.0\.1:\d+)", node.logs())
        assert match is not None
        http = httpx.Client(base_url=match.group(1), timeout=30)
        assert http.get("/healthz").json()["checks"]["broker"]["ok"] is True
        assert http.get("/api/peers").status_code == 401
        assert dcmtk.echoscu(port, calling="NEWPEER").returncode != 0

        config.write_text("allowed_peers: [STORESCU, NEWPEER]\n")
        node.proc.send_signal(signal.SIGHUP)
        node.wait_for_log("configuration reloaded")
        assert dcmtk.echoscu(port, calling="NEWPEER").returncode == 0
        peers = http.get("/api/peers", headers={"Authorization": "Bearer tok-123456"}).json()
        assert [p["ae_title"] for p in peers] == ["STORESCU", "NEWPEER"]
    finally:
        code = node.stop()
    logs = node.logs()
    assert code == 0, logs
    assert '"message": "SIGTERM received: draining"' in logs and '"message": "stopped cleanly"' in logs
    assert "tok-123456" not in logs

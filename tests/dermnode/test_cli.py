from __future__ import annotations

from pathlib import Path

import pytest

from dermnode.cli import main
from dicom_node.ledger import Ledger, ReceivedInstance, StudyState
from dicom_node.spool import Spool


def _finished_study(data_dir: Path) -> tuple[Ledger, Path]:
    spool = Spool(data_dir / "spool")
    received = data_dir / "received.dcm"
    received.write_bytes(b"pixels")
    path = spool.adopt(received, "1.2.3", "1.2.3.4")
    ledger = Ledger(data_dir / "ledger.sqlite3", clock=lambda: 0.0)  # finished long ago
    ledger.record_instance(ReceivedInstance("1.2.3.4", "1.2.3", "1.2.3.5", "1.2", "1.2.840.10008.1.2.1", path,
                                            "STORESCU", "127.0.0.1"))
    ledger.transition("1.2.3", StudyState.DELIVERED)
    return ledger, path


def test_purge_deletes_files_of_finished_studies_and_keeps_the_audit_trail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger, path = _finished_study(tmp_path)
    assert main(["purge", "--data-dir", str(tmp_path), "--older-than", "1", "--dry-run"]) == 0
    assert path.exists() and "would purge 1.2.3" in capsys.readouterr().out
    assert main(["purge", "--data-dir", str(tmp_path), "--older-than", "1"]) == 0
    assert not path.exists() and not (tmp_path / "spool" / "1.2.3").exists()
    assert "study-purged" in [e.kind for e in ledger.events("1.2.3")]
    assert main(["studies", "--data-dir", str(tmp_path)]) == 0
    assert "1.2.3  delivered" in capsys.readouterr().out


def test_misconfiguration_exits_with_a_message_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["studies", "--config", "/nonexistent/dermnode.yaml"]) == 2
    assert "config file /nonexistent/dermnode.yaml does not exist: check --config" in capsys.readouterr().err


def test_worker_without_broker_says_what_to_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker"]) == 2
    assert "--broker redis://" in capsys.readouterr().err


def test_admin_commands_load_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from dermnode.cli import build_parser; build_parser().parse_args(['studies']); "
        "print('torch' in sys.modules, 'monai' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_purge_refuses_a_data_dir_without_a_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dermnode.cli import main

    assert main(["purge", "--older-than", "1", "--data-dir", str(tmp_path / "typo")]) == 2
    assert "no ledger at" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def test_a_worker_has_no_data_directory_to_point_at(capsys: pytest.CaptureFixture[str]) -> None:
    """Workers reach the node over the network: the option that would tie them to its files is gone."""
    with pytest.raises(SystemExit):
        main(["worker", "--broker", "redis://127.0.0.1:6379/0", "--data-dir", "dermnode-data"])
    assert "unrecognized arguments: --data-dir" in capsys.readouterr().err

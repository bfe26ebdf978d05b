from __future__ import annotations

from pathlib import Path

import pytest

from dermnode.kernel.errors import LedgerError
from dicom_node.ledger import Ledger, ReceivedInstance, StudyState


def _inst(tmp_path: Path, sop: str, study: str = "1.2.3") -> ReceivedInstance:
    return ReceivedInstance(sop, study, "1.2.3.9", "1.2.840.10008.5.1.4.1.1.77.1.7", "1.2.840.10008.1.2.1",
                            tmp_path / f"{sop}.dcm", "STORESCU", "127.0.0.1")


def test_generation_guard_rejects_stale_workers(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.record_instance(_inst(tmp_path, "1.1"))
    ledger.transition("1.2.3", StudyState.QUEUED)
    ledger.record_instance(_inst(tmp_path, "1.2"))  # late instance: generation 2, receiving
    assert not ledger.transition("1.2.3", StudyState.ANALYSING, generation=1)
    study = ledger.study("1.2.3")
    assert study is not None and study.generation == 2 and study.state == StudyState.RECEIVING


def test_ledger_survives_reopen_and_is_shared_between_connections(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    a = Ledger(path)
    a.record_instance(_inst(tmp_path, "1.1"))
    b = Ledger(path)
    assert b.transition("1.2.3", StudyState.COMPLETE)
    a.close()
    c = Ledger(path)
    assert c.study("1.2.3").state == StudyState.COMPLETE  # type: ignore[union-attr]
    assert [e.kind for e in c.events("1.2.3")] == ["study-opened", "instance-stored", "study-complete"]


def test_unknown_study_transition_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match=r"study 9\.9 is not in the ledger"):
        Ledger(tmp_path / "l.sqlite3").transition("9.9", StudyState.FAILED)


def test_instance_resent_under_another_study_leaves_the_old_one(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    old = _inst(tmp_path, "1.1", study="1.2.3")
    old.path.write_bytes(b"old copy")
    ledger.record_instance(old)
    ledger.record_instance(_inst(tmp_path, "1.2", study="1.2.3"))
    moved = ReceivedInstance("1.1", "4.5.6", "4.5.6.9", old.sop_class_uid, old.transfer_syntax,
                             tmp_path / "moved.dcm", "STORESCU", "127.0.0.1")
    ledger.record_instance(moved)
    assert ledger.study("1.2.3").instance_count == 1  # type: ignore[union-attr]
    assert ledger.study("4.5.6").instance_count == 1  # type: ignore[union-attr]
    assert not old.path.exists()
    assert "instance-moved" in [e.kind for e in ledger.events("1.2.3")]

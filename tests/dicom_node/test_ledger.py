from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from dermnode.kernel.errors import LedgerError
from dicom_node.ledger import DeliveryState, Ledger, ReceivedInstance, StudyState


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


LEDGER_CALLS = {
    "record_instance": lambda ledger, tmp: ledger.record_instance(_inst(tmp, "1.2.9")),
    "record_rejection": lambda ledger, tmp: ledger.record_rejection("1.2.9", "AE", "reason"),
    "record_not_analysed": lambda ledger, tmp: ledger.record_not_analysed("1.2.3", "1.2.9", "reason"),
    "transition": lambda ledger, tmp: ledger.transition("1.2.3", StudyState.COMPLETE),
    "record_output": lambda ledger, tmp: ledger.record_output("1.2.3", 1, "1.2.10", "sr", "1.2", tmp / "x"),
    "record_delivery": lambda ledger, tmp: ledger.record_delivery("1.2.3", 1, "D", DeliveryState.PENDING, 0, ""),
    "forget_files": lambda ledger, tmp: ledger.forget_files("1.2.3"),
    "study": lambda ledger, tmp: ledger.study("1.2.3"),
    "studies": lambda ledger, tmp: ledger.studies(),
    "instances": lambda ledger, tmp: ledger.instances("1.2.3"),
    "deliveries": lambda ledger, tmp: ledger.deliveries("1.2.3"),
    "outputs": lambda ledger, tmp: ledger.outputs("1.2.3"),
    "events": lambda ledger, tmp: ledger.events(),
}


@pytest.mark.parametrize("call", sorted(LEDGER_CALLS))
def test_every_sqlite_error_becomes_a_ledger_error(tmp_path: Path, call: str) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.close()  # every statement now raises sqlite3.ProgrammingError
    with pytest.raises(LedgerError, match="study ledger"):
        LEDGER_CALLS[call](ledger, tmp_path)


def test_ledger_files_are_private(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "data" / "ledger.sqlite3")
    ledger.record_instance(_inst(tmp_path, "1.2.9"))
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    for name in ("ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm"):
        assert stat.S_IMODE((tmp_path / "data" / name).stat().st_mode) == 0o600, name
    ledger.close()


def test_an_older_world_readable_ledger_is_tightened(tmp_path: Path) -> None:
    Ledger(tmp_path / "ledger.sqlite3").close()
    os.chmod(tmp_path / "ledger.sqlite3", 0o644)
    Ledger(tmp_path / "ledger.sqlite3").close()
    assert stat.S_IMODE((tmp_path / "ledger.sqlite3").stat().st_mode) == 0o600


def test_the_lock_is_free_while_waiting_for_another_writer(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock: our writer waits with our lock released, readers go on."""
    path = tmp_path / "ledger.sqlite3"
    waiting, may_go = threading.Event(), threading.Event()

    def wait(seconds: float) -> None:
        del seconds
        waiting.set()
        may_go.wait(10)

    ledger = Ledger(path, wait=wait)
    ledger.record_instance(_inst(tmp_path, "1.2.8"))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the other process's write transaction
    writer = threading.Thread(target=ledger.record_instance, args=(_inst(tmp_path, "1.2.9"),))
    writer.start()
    try:
        assert waiting.wait(10), "the writer never had to wait"
        assert ledger._lock.acquire(blocking=False), "the ledger lock is held while SQLite is busy"
        ledger._lock.release()
        assert ledger.study("1.2.3") is not None  # a reader is not stalled by the waiting writer
    finally:
        other.execute("ROLLBACK")
        other.close()
        may_go.set()
        writer.join(10)
    assert [i.sop_instance_uid for i in ledger.instances("1.2.3")] == ["1.2.8", "1.2.9"]
    ledger.close()


def test_a_writer_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path, busy_timeout_s=0.0, wait=lambda s: None)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LedgerError, match="is busy or failing: database is locked"):
            ledger.record_rejection("1.2.9", "AE", "reason")
    finally:
        other.execute("ROLLBACK")
        other.close()
        ledger.close()

"""The study ledger: the source of truth for every instance and study (SQLite, WAL).

States of a study::

    receiving ─▶ complete ─▶ queued ─▶ analysing ─▶ delivering ─▶ delivered
                    ▲                         │            └────▶ failed (reason)
                    │                         ├─▶ analysed (no destination: outputs in the outbox)
                    │                         └─▶ failed (reason)
       any state ── late instance ─▶ receiving (generation + 1)

Each state change is also written to the ``events`` table, the audit trail an admin can read.
The ledger is opened by the node and by each worker process; SQLite's WAL mode and a busy
timeout make that safe on one host (or a shared volume with proper locking).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from dermnode.kernel.errors import LedgerError, NotFoundError
from dermnode.kernel.files import private_dir, private_file

#: SQLite's own busy wait (under our lock), and the first pause of the wait with our lock released.
_BUSY_STEP_S = 0.05


def _is_busy(e: sqlite3.OperationalError) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text


class StudyState(StrEnum):
    RECEIVING = "receiving"
    COMPLETE = "complete"
    QUEUED = "queued"
    ANALYSING = "analysing"
    DELIVERING = "delivering"
    ANALYSED = "analysed"
    DELIVERED = "delivered"
    FAILED = "failed"


#: States in which a study still owes the sender its results (re-queued on restart, or when stalled).
UNFINISHED = (StudyState.COMPLETE, StudyState.QUEUED, StudyState.ANALYSING, StudyState.DELIVERING)


class DeliveryState(StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"


FINAL_DELIVERY_STATES = (DeliveryState.DELIVERED, DeliveryState.FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_uid        TEXT PRIMARY KEY,
    state            TEXT NOT NULL,
    generation       INTEGER NOT NULL DEFAULT 1,
    calling_ae       TEXT NOT NULL,
    peer_host        TEXT NOT NULL,
    patient_id       TEXT NOT NULL DEFAULT '',
    accession        TEXT NOT NULL DEFAULT '',
    instance_count   INTEGER NOT NULL DEFAULT 0,
    first_received   REAL NOT NULL,
    last_received    REAL NOT NULL,
    updated          REAL NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    reason           TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_uid        TEXT NOT NULL REFERENCES studies(study_uid),
    series_uid       TEXT NOT NULL,
    sop_class_uid    TEXT NOT NULL,
    transfer_syntax  TEXT NOT NULL,
    path             TEXT NOT NULL,
    calling_ae       TEXT NOT NULL,
    received         REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_study ON instances(study_uid);
CREATE TABLE IF NOT EXISTS outputs (
    sop_instance_uid TEXT PRIMARY KEY,
    study_uid        TEXT NOT NULL,
    generation       INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    sop_class_uid    TEXT NOT NULL,
    path             TEXT NOT NULL,
    created          REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    study_uid        TEXT NOT NULL,
    generation       INTEGER NOT NULL,
    destination      TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    detail           TEXT NOT NULL,
    updated          REAL NOT NULL,
    since            REAL,
    PRIMARY KEY (study_uid, generation, destination)
);
CREATE TABLE IF NOT EXISTS events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    at               REAL NOT NULL,
    study_uid        TEXT NOT NULL DEFAULT '',
    sop_instance_uid TEXT NOT NULL DEFAULT '',
    kind             TEXT NOT NULL,
    detail           TEXT NOT NULL DEFAULT ''
);
"""


@dataclass(frozen=True)
class Study:
    study_uid: str
    state: StudyState
    generation: int
    calling_ae: str
    peer_host: str
    instance_count: int
    first_received: float
    last_received: float
    attempts: int
    reason: str
    updated: float = 0.0
    patient_id: str = ""


@dataclass(frozen=True)
class Instance:
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: Path


@dataclass(frozen=True)
class Event:
    at: float
    study_uid: str
    sop_instance_uid: str
    kind: str
    detail: str


@dataclass(frozen=True)
class ReceivedInstance:
    """What the C-STORE handler knows about an instance it has just made durable."""

    sop_instance_uid: str
    study_uid: str
    series_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: Path
    calling_ae: str
    peer_host: str
    patient_id: str = ""
    accession: str = ""


class Ledger:
    """Thread-safe access to the SQLite ledger of one data directory."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.time,
        *,
        busy_timeout_s: float = 30.0,
        wait: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        self._busy_timeout_s = busy_timeout_s
        self._wait = wait
        try:
            private_dir(path.parent)
            private_file(path)  # before SQLite creates it 0644; its -wal and -shm files take this mode
            # A short busy timeout under our lock; longer waits happen in _tx with the lock released.
            self._db = sqlite3.connect(path, timeout=_BUSY_STEP_S, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(deliveries)")}
            if "since" not in columns:  # ledgers written before deliveries outlasted outages
                self._db.execute("ALTER TABLE deliveries ADD COLUMN since REAL")
        except (sqlite3.Error, OSError) as e:
            raise LedgerError(f"cannot open the study ledger {path}: {e}; check the data directory") from e
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _begin(self) -> None:
        """Take our lock and SQLite's write lock; while another process writes, wait with ours released."""
        deadline = time.monotonic() + self._busy_timeout_s
        pause = _BUSY_STEP_S
        while True:
            self._lock.acquire()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                self._lock.release()
                if not _is_busy(e) or time.monotonic() >= deadline:
                    raise LedgerError(f"the study ledger {self.path} is busy or failing: {e}") from e
            except sqlite3.Error as e:
                self._lock.release()
                raise LedgerError(f"the study ledger {self.path} failed: {e}") from e
            except BaseException:
                self._lock.release()
                raise
            self._wait(pause)  # our lock is free meanwhile: readers and other threads go on
            pause = min(pause * 2, 0.5)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; every :class:`sqlite3.Error` inside becomes a :class:`LedgerError`."""
        self._begin()
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as e:
            try:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error is the one to report
            if isinstance(e, sqlite3.Error):
                raise LedgerError(f"the study ledger {self.path} failed: {e}") from e
            raise
        finally:
            self._lock.release()

    def _event(self, db: sqlite3.Connection, kind: str, study: str = "", sop: str = "", detail: Any = "") -> None:
        text = detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True)
        db.execute(
            "INSERT INTO events(at, study_uid, sop_instance_uid, kind, detail) VALUES (?,?,?,?,?)",
            (self._clock(), study, sop, kind, text),
        )

    # --- receiving -------------------------------------------------------------------------------
    def record_instance(self, inst: ReceivedInstance) -> Study:
        """Record a durable instance; a new instance on a finished study re-opens it (generation + 1)."""
        now = self._clock()
        moved_from: Path | None = None
        try:
            with self._tx() as db:
                row = db.execute("SELECT * FROM studies WHERE study_uid=?", (inst.study_uid,)).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO studies(study_uid, state, calling_ae, peer_host, patient_id, accession,"
                        " first_received, last_received, updated) VALUES (?,?,?,?,?,?,?,?,?)",
                        (inst.study_uid, StudyState.RECEIVING, inst.calling_ae, inst.peer_host,
                         inst.patient_id, inst.accession, now, now, now),
                    )
                    self._event(db, "study-opened", inst.study_uid, detail={"calling_ae": inst.calling_ae})
                elif row["state"] != StudyState.RECEIVING:
                    db.execute(
                        "UPDATE studies SET state=?, generation=generation+1, reason='', attempts=0,"
                        " calling_ae=?, peer_host=?, last_received=?, updated=? WHERE study_uid=?",
                        (StudyState.RECEIVING, inst.calling_ae, inst.peer_host, now, now, inst.study_uid),
                    )
                    self._event(db, "study-reopened", inst.study_uid, inst.sop_instance_uid,
                                {"previous_state": row["state"], "generation": row["generation"] + 1})
                else:
                    db.execute(
                        "UPDATE studies SET last_received=?, updated=? WHERE study_uid=?",
                        (now, now, inst.study_uid),
                    )
                existed = db.execute(
                    "SELECT study_uid, path FROM instances WHERE sop_instance_uid=?", (inst.sop_instance_uid,)
                ).fetchone()
                db.execute(
                    "INSERT OR REPLACE INTO instances(sop_instance_uid, study_uid, series_uid, sop_class_uid,"
                    " transfer_syntax, path, calling_ae, received) VALUES (?,?,?,?,?,?,?,?)",
                    (inst.sop_instance_uid, inst.study_uid, inst.series_uid, inst.sop_class_uid,
                     inst.transfer_syntax, str(inst.path), inst.calling_ae, now),
                )
                db.execute(
                    "UPDATE studies SET instance_count=(SELECT COUNT(*) FROM instances WHERE study_uid=?)"
                    " WHERE study_uid=?",
                    (inst.study_uid, inst.study_uid),
                )
                if existed and existed["study_uid"] != inst.study_uid:
                    # Re-sent under another study (e.g. after a correction in the PACS): it leaves the old one.
                    db.execute(
                        "UPDATE studies SET instance_count=(SELECT COUNT(*) FROM instances WHERE study_uid=?)"
                        " WHERE study_uid=?",
                        (existed["study_uid"], existed["study_uid"]),
                    )
                    self._event(db, "instance-moved", existed["study_uid"], inst.sop_instance_uid,
                                {"to_study": inst.study_uid})
                    moved_from = Path(existed["path"])
                self._event(db, "instance-replaced" if existed else "instance-stored",
                            inst.study_uid, inst.sop_instance_uid, {"path": str(inst.path)})
        except LedgerError as e:
            raise LedgerError(f"cannot record instance {inst.sop_instance_uid}: {e}") from e
        if moved_from is not None and moved_from != inst.path:
            moved_from.unlink(missing_ok=True)  # the ledger no longer points at it
        study = self.study(inst.study_uid)
        assert study is not None
        return study

    def record_rejection(self, sop_instance_uid: str, calling_ae: str, reason: str) -> None:
        """Audit an instance that was refused (it is not stored: the sender keeps it)."""
        with self._tx() as db:
            self._event(db, "instance-rejected", "", sop_instance_uid, {"calling_ae": calling_ae, "reason": reason})

    def record_not_analysed(self, study_uid: str, sop_instance_uid: str, reason: str) -> None:
        """Audit an instance of a study that analysis had to leave out (the rest of the study goes on)."""
        with self._tx() as db:
            self._event(db, "instance-not-analysed", study_uid, sop_instance_uid, {"reason": reason})

    # --- state changes ---------------------------------------------------------------------------
    def transition(
        self,
        study_uid: str,
        to: StudyState,
        *,
        expect: Sequence[StudyState] | None = None,
        generation: int | None = None,
        reason: str = "",
        count_attempt: bool = False,
    ) -> bool:
        """Move a study to ``to`` if it is in one of ``expect`` (and of ``generation``); True if moved."""
        now = self._clock()
        with self._tx() as db:
            row = db.execute("SELECT state, generation FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
            if row is None:
                raise LedgerError(f"study {study_uid} is not in the ledger {self.path}")
            if expect is not None and row["state"] not in expect:
                return False
            if generation is not None and row["generation"] != generation:
                return False
            db.execute(
                "UPDATE studies SET state=?, reason=?, updated=?, attempts=attempts+? WHERE study_uid=?",
                (to, reason, now, 1 if count_attempt else 0, study_uid),
            )
            self._event(db, f"study-{to}", study_uid, detail={"generation": row["generation"], "reason": reason}
                        if reason else {"generation": row["generation"]})
            return True

    def request_resend(self, study_uid: str, requested_by: str) -> Study:
        """Analyse and deliver a finished study again (same generation: same output UIDs, so the
        destination replaces rather than duplicates); audited with who asked."""
        finished = (StudyState.FAILED, StudyState.DELIVERED, StudyState.ANALYSED)
        study = self.study(study_uid)
        if study is None:
            raise NotFoundError(f"study {study_uid} is not in the ledger {self.path}: check the Study Instance UID")
        if not self.transition(study_uid, StudyState.COMPLETE, expect=finished, generation=study.generation,
                               reason=f"resend requested by {requested_by}"):
            raise LedgerError(f"study {study_uid} is {study.state}, not finished: only failed, delivered or "
                              "analysed studies can be resent")
        with self._tx() as db:  # the destinations of the resend are today's; the events keep the old outcomes
            db.execute("DELETE FROM deliveries WHERE study_uid=? AND generation=?", (study_uid, study.generation))
        study = self.study(study_uid)
        assert study is not None
        return study

    def touch(self, study_uid: str, generation: int, state: StudyState) -> bool:
        """Record progress (the study's ``updated`` time) while a worker is busy with it; not audited."""
        with self._tx() as db:
            cur = db.execute("UPDATE studies SET updated=? WHERE study_uid=? AND generation=? AND state=?",
                             (self._clock(), study_uid, generation, state))
            return cur.rowcount == 1

    def record_output(
        self, study_uid: str, generation: int, sop_instance_uid: str, kind: str, sop_class_uid: str, path: Path
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?)",
                (sop_instance_uid, study_uid, generation, kind, sop_class_uid, str(path), self._clock()),
            )
            self._event(db, "output-written", study_uid, sop_instance_uid, {"kind": kind, "path": str(path)})

    def record_delivery(
        self, study_uid: str, generation: int, destination: str, state: DeliveryState, attempts: int, detail: str
    ) -> None:
        """Record the state of one generation's delivery to one destination (audited).

        ``since`` (see :meth:`delivery_since`) is when this run of attempts began: kept while the delivery is
        pending or retrying, also across restarts, and started afresh after a final state (a resend).
        """
        now = self._clock()
        with self._tx() as db:
            row = db.execute(
                "SELECT state, since FROM deliveries WHERE study_uid=? AND generation=? AND destination=?",
                (study_uid, generation, destination),
            ).fetchone()
            keep = row is not None and row["since"] is not None and row["state"] not in FINAL_DELIVERY_STATES
            db.execute(
                "INSERT OR REPLACE INTO deliveries VALUES (?,?,?,?,?,?,?,?)",
                (study_uid, generation, destination, state, attempts, detail, now, row["since"] if keep else now),
            )
            db.execute("UPDATE studies SET updated=? WHERE study_uid=? AND generation=?",
                       (self._clock(), study_uid, generation))
            self._event(db, f"delivery-{state}", study_uid,
                        detail={"destination": destination, "attempts": attempts, "detail": detail})

    def delivery_since(self, study_uid: str, generation: int, destination: str) -> float | None:
        """When the current run of delivery attempts to ``destination`` began (None: never recorded)."""
        rows = self._rows("SELECT since FROM deliveries WHERE study_uid=? AND generation=? AND destination=?",
                          (study_uid, generation, destination))
        return rows[0]["since"] if rows else None

    def forget_files(self, study_uid: str) -> list[Path]:
        """Mark a finished study's spool and outbox files as purged; returns the paths to delete.

        The study, instance and delivery rows stay: the audit trail outlives the pixel data.
        """
        with self._tx() as db:
            row = db.execute("SELECT state FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
            if row is None or row["state"] not in (StudyState.DELIVERED, StudyState.ANALYSED, StudyState.FAILED):
                raise LedgerError(f"study {study_uid} is not finished; only delivered, analysed or failed "
                                  "studies can be purged")
            paths = [Path(r["path"]) for r in db.execute(
                "SELECT path FROM instances WHERE study_uid=? UNION SELECT path FROM outputs WHERE study_uid=?",
                (study_uid, study_uid))]
            self._event(db, "study-purged", study_uid, detail={"files": len(paths)})
            return paths

    # --- queries ---------------------------------------------------------------------------------
    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return list(self._db.execute(sql, params).fetchall())
            except sqlite3.Error as e:
                raise LedgerError(f"cannot read the study ledger {self.path}: {e}") from e

    def study(self, study_uid: str) -> Study | None:
        rows = self._rows("SELECT * FROM studies WHERE study_uid=?", (study_uid,))
        return _study(rows[0]) if rows else None

    def studies(self, states: Sequence[StudyState] | None = None) -> list[Study]:
        if states is None:
            return [_study(r) for r in self._rows("SELECT * FROM studies ORDER BY first_received")]
        marks = ",".join("?" for _ in states)
        rows = self._rows(f"SELECT * FROM studies WHERE state IN ({marks}) ORDER BY first_received", tuple(states))
        return [_study(r) for r in rows]

    def instances(self, study_uid: str) -> list[Instance]:
        rows = self._rows(
            "SELECT * FROM instances WHERE study_uid=? ORDER BY series_uid, received, sop_instance_uid", (study_uid,)
        )
        return [
            Instance(r["sop_instance_uid"], r["study_uid"], r["series_uid"], r["sop_class_uid"],
                     r["transfer_syntax"], Path(r["path"]))
            for r in rows
        ]

    def instance_paths(self) -> set[Path]:
        """The spool path of every recorded instance."""
        return {Path(r["path"]) for r in self._rows("SELECT path FROM instances")}

    def deliveries(self, study_uid: str) -> list[dict[str, Any]]:
        sql = "SELECT * FROM deliveries WHERE study_uid=? ORDER BY generation, destination"
        return [dict(r) for r in self._rows(sql, (study_uid,))]

    def outputs(self, study_uid: str, generation: int | None = None) -> list[dict[str, Any]]:
        if generation is None:
            return [dict(r) for r in self._rows("SELECT * FROM outputs WHERE study_uid=?", (study_uid,))]
        sql = "SELECT * FROM outputs WHERE study_uid=? AND generation=?"
        return [dict(r) for r in self._rows(sql, (study_uid, generation))]

    def events(self, study_uid: str | None = None, limit: int = 1000) -> list[Event]:
        if study_uid is None:
            rows = self._rows("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._rows("SELECT * FROM events WHERE study_uid=? ORDER BY id DESC LIMIT ?", (study_uid, limit))
        return [Event(r["at"], r["study_uid"], r["sop_instance_uid"], r["kind"], r["detail"]) for r in rows][::-1]


    def events_after(self, after_id: int, limit: int = 1000) -> list[tuple[int, Event]]:
        """Events recorded after event ``after_id``, oldest first, with their ids (for followers of the trail)."""
        rows = self._rows("SELECT * FROM events WHERE id>? ORDER BY id LIMIT ?", (after_id, limit))
        return [(r["id"], Event(r["at"], r["study_uid"], r["sop_instance_uid"], r["kind"], r["detail"]))
                for r in rows]

    def last_event_id(self) -> int:
        return int(self._rows("SELECT COALESCE(MAX(id), 0) AS n FROM events")[0]["n"])

    def recent_events(self, kinds: Sequence[str], limit: int = 50) -> list[Event]:
        """The latest events of the given kinds, newest first (e.g. refusals for the status page)."""
        marks = ",".join("?" for _ in kinds)
        rows = self._rows(f"SELECT * FROM events WHERE kind IN ({marks}) ORDER BY id DESC LIMIT ?",
                          (*kinds, limit))
        return [Event(r["at"], r["study_uid"], r["sop_instance_uid"], r["kind"], r["detail"]) for r in rows]

    def count_studies_by_state(self) -> dict[StudyState, int]:
        rows = self._rows("SELECT state, COUNT(*) AS n FROM studies GROUP BY state")
        return {StudyState(r["state"]): int(r["n"]) for r in rows}

    def count_deliveries_by_state(self) -> dict[DeliveryState, int]:
        """Deliveries of the studies' current generations, by state."""
        rows = self._rows("SELECT d.state, COUNT(*) AS n FROM deliveries d JOIN studies s"
                          " ON s.study_uid=d.study_uid AND s.generation=d.generation GROUP BY d.state")
        return {DeliveryState(r["state"]): int(r["n"]) for r in rows}

    def check_writable(self) -> None:
        """Raise LedgerError unless a write transaction can be opened now (for /healthz)."""
        try:
            with self._tx():
                pass
        except sqlite3.Error as e:
            raise LedgerError(f"the ledger {self.path} is not writable: {e}") from e


def _study(row: sqlite3.Row) -> Study:
    return Study(
        study_uid=row["study_uid"],
        state=StudyState(row["state"]),
        generation=row["generation"],
        calling_ae=row["calling_ae"],
        peer_host=row["peer_host"],
        instance_count=row["instance_count"],
        first_received=row["first_received"],
        last_received=row["last_received"],
        attempts=row["attempts"],
        reason=row["reason"],
        updated=row["updated"],
        patient_id=row["patient_id"],
    )

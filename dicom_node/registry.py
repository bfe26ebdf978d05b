"""Peers and destinations an administrator changes at runtime, kept in the ledger database.

The configured lists (YAML, environment, flags) are the base; the registry records what an administrator
added or removed since (``dermnode peers add``, the admin API), so a change applies without a restart,
survives one, and is audited in the ledger's ``events`` table with who made it. A removal of a configured
entry is kept as a tombstone, so the entry stays removed after a restart until it is added again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dermnode.kernel.addresses import Address
from dermnode.kernel.errors import LedgerError, NotFoundError
from dermnode.kernel.settings import Peer, Settings

Kind = Literal["peer", "destination"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registry (
    kind      TEXT NOT NULL,
    ae_title  TEXT NOT NULL,
    entry     TEXT NOT NULL,
    removed   INTEGER NOT NULL DEFAULT 0,
    updated   REAL NOT NULL,
    PRIMARY KEY (kind, ae_title)
);
CREATE TABLE IF NOT EXISTS node_configuration (
    key       TEXT PRIMARY KEY,
    value     TEXT NOT NULL,
    updated   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS echoes (
    ae_title  TEXT PRIMARY KEY,
    at        REAL NOT NULL,
    ok        INTEGER NOT NULL,
    detail    TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class EchoRecord:
    """The last C-ECHO of a destination from this node."""

    ae_title: str
    at: float
    ok: bool
    detail: str


class Registry:
    """Runtime peers and destinations over the configured ones; one per process, thread-safe.

    Opens its own connection to the ledger file (SQLite WAL: the node, the CLI and the workers share it).
    """

    def __init__(self, ledger_path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = ledger_path
        self._clock = clock
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(ledger_path, timeout=30.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise LedgerError(f"cannot open the registry in {ledger_path}: {e}; check the data directory") from e
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _audit(self, db: sqlite3.Connection, kind: str, detail: dict[str, Any]) -> None:
        db.execute("INSERT INTO events(at, study_uid, sop_instance_uid, kind, detail) VALUES (?,?,?,?,?)",
                   (self._clock(), "", "", kind, json.dumps(detail, sort_keys=True)))

    def _put(self, kind: Kind, ae_title: str, entry: dict[str, Any], removed: bool, by: str) -> None:
        try:
            with self._tx() as db:
                db.execute("INSERT OR REPLACE INTO registry VALUES (?,?,?,?,?)",
                           (kind, ae_title, json.dumps(entry, sort_keys=True), int(removed), self._clock()))
                self._audit(db, f"{kind}-{'removed' if removed else 'added'}",
                            {"ae_title": ae_title, "entry": entry, "by": by})
        except sqlite3.Error as e:
            raise LedgerError(f"cannot record the {kind} {ae_title!r} in {self.path}: {e}") from e

    def _overrides(self, kind: Kind) -> dict[str, tuple[dict[str, Any], bool]]:
        with self._lock:
            rows = self._db.execute("SELECT ae_title, entry, removed FROM registry WHERE kind=?", (kind,)).fetchall()
        return {r["ae_title"]: (json.loads(r["entry"]), bool(r["removed"])) for r in rows}

    # --- peers -----------------------------------------------------------------------------------
    def add_peer(self, peer: Peer, by: str) -> None:
        """Allow ``peer`` (replacing any entry of its AE title)."""
        self._put("peer", peer.ae_title, peer.model_dump(mode="json", exclude_none=True), False, by)

    def remove_peer(self, ae_title: str, settings: Settings, by: str) -> None:
        if ae_title not in {p.ae_title for p in self.peers(settings)}:
            raise NotFoundError(f"{ae_title!r} is not an allowed peer: nothing to remove")
        self._put("peer", ae_title, {"ae_title": ae_title}, True, by)

    def peers(self, settings: Settings) -> tuple[Peer, ...]:
        """The allowed peers in force: the configured ones, changed by the recorded additions and removals."""
        overrides = self._overrides("peer")
        out = [p for p in settings.allowed_peers if p.ae_title not in overrides]
        out += [Peer.model_validate(entry) for entry, removed in overrides.values() if not removed]
        return tuple(out)

    # --- destinations ----------------------------------------------------------------------------
    def add_destination(self, address: Address, by: str) -> None:
        self._put("destination", address.ae_title, address.to_message(), False, by)

    def remove_destination(self, ae_title: str, settings: Settings, by: str) -> None:
        if ae_title not in {d.ae_title for d in self.destinations(settings) if isinstance(d, Address)}:
            raise NotFoundError(f"{ae_title!r} is not a destination: nothing to remove")
        self._put("destination", ae_title, {"ae_title": ae_title}, True, by)

    def destinations(self, settings: Settings) -> tuple[Address | Literal["sender"], ...]:
        """The destinations in force ("sender" stays as configured: it is not an AE of its own)."""
        overrides = self._overrides("destination")
        out: list[Address | Literal["sender"]] = [
            d for d in settings.destinations if not isinstance(d, Address) or d.ae_title not in overrides
        ]
        out += [Address.from_message(entry) for entry, removed in overrides.values() if not removed]
        return tuple(out)

    def destination(self, ae_title: str, settings: Settings) -> Address:
        for d in self.destinations(settings):
            if isinstance(d, Address) and d.ae_title == ae_title:
                return d
        raise NotFoundError(f"{ae_title!r} is not a destination: add it first (dermnode destinations add)")

    def effective(self, settings: Settings) -> Settings:
        """``settings`` with the peers and destinations in force."""
        return settings.model_copy(update={"allowed_peers": self.peers(settings),
                                           "destinations": self.destinations(settings)})

    # --- what the running node was configured with -----------------------------------------------
    def record_configured(self, settings: Settings) -> None:
        """Keep the node's configured peers and destinations (YAML, environment and its command-line flags),
        so that ``dermnode peers`` in another process starts from the same lists as the node."""
        values = {
            "allowed_peers": [p.model_dump(mode="json", exclude_none=True) for p in settings.allowed_peers],
            "destinations": [d if isinstance(d, str) else d.to_message() for d in settings.destinations],
        }
        with self._tx() as db:
            for key, value in values.items():
                db.execute("INSERT OR REPLACE INTO node_configuration VALUES (?,?,?)",
                           (key, json.dumps(value, sort_keys=True), self._clock()))

    def as_configured_by_node(self, settings: Settings) -> Settings:
        """``settings`` with the configured peers and destinations of the node that uses this ledger, if one
        recorded them (:meth:`record_configured`)."""
        with self._lock:
            rows = dict(self._db.execute("SELECT key, value FROM node_configuration").fetchall())
        if not rows:
            return settings
        peers = tuple(Peer.model_validate(p) for p in json.loads(rows.get("allowed_peers", "[]")))
        destinations = tuple(d if isinstance(d, str) else Address.from_message(d)
                             for d in json.loads(rows.get("destinations", "[]")))
        return settings.model_copy(update={"allowed_peers": peers, "destinations": destinations})

    # --- C-ECHO results --------------------------------------------------------------------------
    def record_echo(self, ae_title: str, ok: bool, detail: str, by: str) -> EchoRecord:
        record = EchoRecord(ae_title, self._clock(), ok, detail)
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO echoes VALUES (?,?,?,?)", (ae_title, record.at, int(ok), detail))
            self._audit(db, "destination-echo", {"ae_title": ae_title, "ok": ok, "detail": detail, "by": by})
        return record

    def echoes(self) -> dict[str, EchoRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM echoes").fetchall()
        return {r["ae_title"]: EchoRecord(r["ae_title"], r["at"], bool(r["ok"]), r["detail"]) for r in rows}

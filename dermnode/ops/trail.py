"""Follows the ledger's event trail and hands each new event to the observers (metrics, audit).

The ledger is written by the node and by every worker process on the host, so following it sees
instances stored, refusals, analyses and deliveries wherever they ran. Following starts at the events
present at start: history is not replayed into counters or audit messages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from dicom_node.ledger import Event, Ledger

LOG = logging.getLogger("dermnode.ops")

EventObserver = Callable[[Event], None]


class EventTrail:
    """A background thread that polls the ledger for events every ``interval_s``."""

    def __init__(self, ledger: Ledger, observers: Sequence[EventObserver], interval_s: float = 0.5) -> None:
        self._ledger = ledger
        self._observers = list(observers)
        self._interval = interval_s
        self._last = ledger.last_event_id()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dermnode-event-trail", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.poll()  # what was recorded while stopping still counts

    def poll(self) -> int:
        """Hand over the events recorded since the last poll; returns how many."""
        count = 0
        while batch := self._ledger.events_after(self._last):
            for event_id, event in batch:
                self._last = event_id
                count += 1
                for observe in self._observers:
                    try:
                        observe(event)
                    except Exception:
                        LOG.exception("observer %r failed on ledger event %s", observe, event.kind)
        return count

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll()
            except Exception:
                LOG.exception("reading the ledger's event trail failed; retrying")

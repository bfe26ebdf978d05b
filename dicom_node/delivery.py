"""Delivery of a study generation's outputs to one destination, by the node, which holds the outbox.

Analysis workers (GPUs) never wait on a slow or absent PACS: once a generation's outputs are in the node's
outbox, each destination gets a delivery job on the node's delivery queue (:class:`DeliveryQueue`, a thread
of the node); a failed attempt is queued again after the delay of the single
:class:`~dermnode.kernel.retry.RetryPolicy` (back-off from ``send_backoff_s`` capped at ``send_backoff_max_s``,
for ``send_retry_period_s``, 24 h by default). The period is measured from the start of the run of attempts that
the ledger records, so a restart of the node or a worker does not restart the clock. When every destination of
a generation has a final state, the study becomes delivered, or failed with the reasons; a failed study can be
resent (``dermnode resend``, the admin API or the status page).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dermnode.kernel.addresses import Address
from dermnode.kernel.messages import DeliveryJob
from dermnode.kernel.settings import Settings
from dicom_node.ledger import FINAL_DELIVERY_STATES, DeliveryState, Ledger, StudyState
from dicom_node.sender import StoreSender

LOG = logging.getLogger("dermnode.delivery")

#: Send order: segmentations before the report that references them.
_KIND_ORDER = {"seg": 0, "attention-seg": 1, "attention-levels-seg": 2, "sr": 3}


@dataclass(frozen=True)
class DeliveryOutcome:
    job: DeliveryJob
    state: DeliveryState | str
    detail: str
    retry_in_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**self.job.to_message(), "state": str(self.state), "detail": self.detail,
                "retry_in_s": self.retry_in_s}


class DeliveryScheduler(Protocol):
    def schedule(self, job: DeliveryJob, delay_s: float = 0.0) -> None: ...

    def close(self) -> None: ...


class DeliveryQueue:
    """Threads of the node run due delivery jobs in time order, ``threads`` at once (so that a destination
    that hangs until its time-out holds up only one of them).

    Jobs held in memory are not lost on a crash: the study stays "delivering" in the ledger and is
    analysed and delivered again (same UIDs) when the node restarts.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, threads: int = 4) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, DeliveryJob]] = []
        self._counter = 0
        self._cv = threading.Condition()
        self._run: Callable[[DeliveryJob], object] | None = None
        self._closed = False
        self._threads = [threading.Thread(target=self._loop, name=f"dermnode-delivery-{i}", daemon=True)
                         for i in range(threads)]

    def bind(self, run: Callable[[DeliveryJob], object]) -> None:
        """Set what runs a due job and start the threads."""
        self._run = run
        for thread in self._threads:
            thread.start()

    def schedule(self, job: DeliveryJob, delay_s: float = 0.0) -> None:
        with self._cv:
            self._counter += 1
            heapq.heappush(self._heap, (self._clock() + delay_s, self._counter, job))
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=60)

    def _loop(self) -> None:
        assert self._run is not None
        while True:
            with self._cv:
                while not self._closed and (not self._heap or self._heap[0][0] > self._clock()):
                    timeout = self._heap[0][0] - self._clock() if self._heap else None
                    self._cv.wait(timeout)
                if self._closed:
                    return
                _, _, job = heapq.heappop(self._heap)
            try:
                self._run(job)
            except Exception:
                LOG.exception("delivery of study %s to %s failed", job.study_uid, job.destination.describe())


class Delivery:
    """One attempt per call; says whether to retry; closes the study when all destinations are final."""

    def __init__(
        self,
        settings: Settings,
        ledger: Callable[[], Ledger],
        sender: StoreSender | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledger = ledger
        self._retry = settings.delivery_retry
        self._clock = clock
        self._sender = sender or StoreSender(
            settings.ae_title, timeout_s=settings.network_timeout_s, max_pdu=settings.max_pdu_size, tls=settings.tls
        )

    def files(self, study_uid: str, generation: int) -> list[Path]:
        outputs = self._ledger().outputs(study_uid, generation)
        outputs.sort(key=lambda o: (_KIND_ORDER.get(o["kind"], 9), o["sop_instance_uid"]))
        return [Path(o["path"]) for o in outputs]

    def attempt(self, job: DeliveryJob) -> DeliveryOutcome:
        ledger = self._ledger()
        study = ledger.study(job.study_uid)
        if study is None or study.generation != job.generation or study.state != StudyState.DELIVERING:
            LOG.info("delivery of study %s generation %d is stale; skipping", job.study_uid, job.generation)
            return DeliveryOutcome(job, "skipped", "stale job")
        dest = job.destination.describe()
        since = ledger.delivery_since(job.study_uid, job.generation, dest)
        result = self._sender.send(job.destination, self.files(job.study_uid, job.generation))
        elapsed = self._clock() - since if since is not None else 0.0
        if result.delivered:
            ledger.record_delivery(job.study_uid, job.generation, dest, DeliveryState.DELIVERED, job.attempt,
                                   "delivered")
            outcome = DeliveryOutcome(job, DeliveryState.DELIVERED, "delivered")
        elif not self._retry.gives_up_after(job.attempt, elapsed):
            delay = self._retry.delay(job.attempt)
            ledger.record_delivery(job.study_uid, job.generation, dest, DeliveryState.RETRYING, job.attempt,
                                   f"{result.detail}; retry in {delay:g} s")
            return DeliveryOutcome(job, DeliveryState.RETRYING, result.detail, retry_in_s=delay)
        else:
            ledger.record_delivery(job.study_uid, job.generation, dest, DeliveryState.FAILED, job.attempt,
                                   result.detail)
            LOG.error("delivery of study %s to %s failed after %d attempts in %.0f s: %s", job.study_uid, dest,
                      job.attempt, elapsed, result.detail)
            outcome = DeliveryOutcome(job, DeliveryState.FAILED, result.detail)
        self._close_if_final(job.study_uid, job.generation)
        return outcome

    def _close_if_final(self, study_uid: str, generation: int) -> None:
        ledger = self._ledger()
        rows = [r for r in ledger.deliveries(study_uid) if r["generation"] == generation]
        if any(r["state"] not in FINAL_DELIVERY_STATES for r in rows):
            return
        failed = [r for r in rows if r["state"] == DeliveryState.FAILED]
        if failed:
            reason = "; ".join(f"{r['destination']}: {r['detail']}" for r in failed)
            ledger.transition(study_uid, StudyState.FAILED, expect=[StudyState.DELIVERING], generation=generation,
                              reason=f"delivery failed: {reason}")
        else:
            ledger.transition(study_uid, StudyState.DELIVERED, expect=[StudyState.DELIVERING], generation=generation)


def start_deliveries(ledger: Ledger, scheduler: DeliveryScheduler, study_uid: str, generation: int,
                     destinations: tuple[Address, ...]) -> None:
    """Mark each destination pending and queue its first attempt (the study must be "delivering")."""
    for dest in destinations:
        ledger.record_delivery(study_uid, generation, dest.describe(), DeliveryState.PENDING, 0, "queued")
    for dest in destinations:
        scheduler.schedule(DeliveryJob(study_uid, generation, dest))


class Deliveries:
    """The node's delivery side: :class:`Delivery` attempts run on a :class:`DeliveryQueue`, retries re-queued."""

    def __init__(self, settings: Settings, ledger: Ledger, sender: StoreSender | None = None) -> None:
        self._ledger = ledger
        self.delivery = Delivery(settings, lambda: ledger, sender)
        self.queue = DeliveryQueue(threads=settings.delivery_threads)
        self.queue.bind(self.run)

    def run(self, job: DeliveryJob) -> DeliveryOutcome:
        """One attempt now; a retry goes back on the queue with its delay."""
        outcome = self.delivery.attempt(job)
        if outcome.retry_in_s is not None:
            self.queue.schedule(outcome.job.next_attempt(), outcome.retry_in_s)
        return outcome

    def start(self, study_uid: str, generation: int, destinations: tuple[Address, ...]) -> None:
        start_deliveries(self._ledger, self.queue, study_uid, generation, destinations)

    def close(self) -> None:
        self.queue.close()

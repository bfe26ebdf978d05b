"""Study completion: decide when a study has all its instances, then hand it to the queue.

A study is complete when no open association has sent it an instance, and either its quiet period
passed since the last instance, the expected instance count arrived, or its deadline passed (per
calling AE, see :class:`~dermnode.kernel.settings.CompletionPolicy`). The open-association set lives in
memory only: after a restart no association is open, so every study left "receiving" completes
after its quiet period, and nothing is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dermnode.kernel.retry import RetryPolicy
from dermnode.kernel.settings import CompletionPolicy
from dicom_node.ledger import Ledger, Study, StudyState

LOG = logging.getLogger(__name__)


def is_complete(study: Study, policy: CompletionPolicy, now: float, sending: bool) -> bool:
    """Pure completion rule for one study in state receiving."""
    if policy.deadline_s is not None and now - study.first_received >= policy.deadline_s:
        return True
    if sending:
        return False
    if policy.expected_instances is not None and study.instance_count >= policy.expected_instances:
        return True
    return now - study.last_received >= policy.quiet_period_s


@dataclass
class OpenAssociations:
    """Which studies each open association has sent instances of (thread-safe)."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._by_assoc: dict[int, set[str]] = {}

    def opened(self, assoc_id: int) -> None:
        with self._lock:
            self._by_assoc.setdefault(assoc_id, set())

    def sent(self, assoc_id: int, study_uid: str) -> None:
        with self._lock:
            self._by_assoc.setdefault(assoc_id, set()).add(study_uid)

    def closed(self, assoc_id: int) -> None:
        with self._lock:
            self._by_assoc.pop(assoc_id, None)

    def sending(self) -> set[str]:
        with self._lock:
            return set().union(*self._by_assoc.values()) if self._by_assoc else set()


class CompletionMonitor:
    """Background thread that completes studies and queues them through ``on_complete``.

    A study that cannot be queued (broker down) stays complete and is retried with back-off.
    """

    #: Queueing while the broker is unreachable: never give up, 1 s doubling to at most 60 s.
    QUEUE_RETRY = RetryPolicy(attempts=None, base_s=1.0, cap_s=60.0)

    def __init__(
        self,
        ledger: Ledger,
        associations: OpenAssociations,
        policy_for: Callable[[str], CompletionPolicy],
        on_complete: Callable[[Study], None],
        interval_s: float = 0.2,
        clock: Callable[[], float] = time.time,
        stalled_after_s: float | None = None,
        delivery_wait_s: float = 0.0,
    ) -> None:
        self._ledger = ledger
        self._associations = associations
        self._policy_for = policy_for
        self._on_complete = on_complete
        self._interval = interval_s
        self._clock = clock
        self._stalled_after = stalled_after_s
        #: A delivering study may wait this long for its next attempt (the longest delivery back-off).
        self._delivery_wait = delivery_wait_s
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dermnode-completion", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def tick(self) -> list[str]:
        """One pass: complete what is due, (re)queue what is complete; returns the queued study UIDs."""
        now = self._clock()
        sending = self._associations.sending()
        for study in self._ledger.studies([StudyState.RECEIVING]):
            policy = self._policy_for(study.calling_ae)
            if is_complete(study, policy, now, study.study_uid in sending):
                moved = self._ledger.transition(
                    study.study_uid, StudyState.COMPLETE, expect=[StudyState.RECEIVING], generation=study.generation
                )
                if moved:
                    LOG.info("study %s complete: %d instance(s) from %s", study.study_uid,
                             study.instance_count, study.calling_ae)
        self._requeue_stalled(now)
        queued = []
        for study in self._ledger.studies([StudyState.COMPLETE]):
            if self._retry_at.get(study.study_uid, 0.0) > now:
                continue
            try:
                self._on_complete(study)
                queued.append(study.study_uid)
                self._retry_at.pop(study.study_uid, None)
            except Exception as e:  # broker down: stays complete, retried with back-off
                self._failures[study.study_uid] = failures = self._failures.get(study.study_uid, 0) + 1
                delay = self.QUEUE_RETRY.delay(failures)
                self._retry_at[study.study_uid] = now + delay
                LOG.error("study %s could not be queued (retry in %.0f s): %s", study.study_uid, delay, e)
        return queued

    def _requeue_stalled(self, now: float) -> None:
        """A study queued, analysing or delivering with no progress for too long goes back to complete.

        This is the safety net for a lost message or a worker killed mid-task: outputs have
        deterministic UIDs, so running the study again replaces rather than duplicates them. A delivering
        study is allowed the longest delivery back-off on top, since it may be waiting for its next attempt.
        """
        if self._stalled_after is None:
            return
        stalled = [StudyState.QUEUED, StudyState.ANALYSING, StudyState.DELIVERING]
        for study in self._ledger.studies(stalled):
            allowed = self._stalled_after + (self._delivery_wait if study.state is StudyState.DELIVERING else 0.0)
            if now - study.updated >= allowed:
                moved = self._ledger.transition(
                    study.study_uid, StudyState.COMPLETE, expect=[study.state], generation=study.generation,
                    reason=f"re-queued: no progress for {now - study.updated:.0f} s while {study.state}",
                )
                if moved:
                    LOG.warning("study %s stalled while %s for %.0f s; queueing it again", study.study_uid,
                                study.state, now - study.updated)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.tick()
            except Exception:
                LOG.exception("completion monitor pass failed; retrying")

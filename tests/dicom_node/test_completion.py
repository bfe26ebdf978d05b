from __future__ import annotations

from pathlib import Path

from dermnode.kernel.settings import CompletionPolicy
from dicom_node.completion import CompletionMonitor, OpenAssociations, is_complete
from dicom_node.ledger import Ledger, ReceivedInstance, Study, StudyState


def _study(first: float, last: float, n: int) -> Study:
    return Study("1.2.3", StudyState.RECEIVING, 1, "A", "127.0.0.1", n, first, last, 0, "")


def test_quiet_period_waits_for_silence_and_closed_associations() -> None:
    policy = CompletionPolicy(quiet_period_s=3)
    assert not is_complete(_study(0, 10, 1), policy, now=12.9, sending=False)
    assert is_complete(_study(0, 10, 1), policy, now=13.0, sending=False)
    assert not is_complete(_study(0, 10, 1), policy, now=100, sending=True)


def test_expected_count_completes_early_and_deadline_even_while_sending() -> None:
    policy = CompletionPolicy(quiet_period_s=60, expected_instances=2, deadline_s=30)
    assert is_complete(_study(0, 10, 2), policy, now=10.1, sending=False)
    assert not is_complete(_study(0, 10, 1), policy, now=10.1, sending=False)
    assert is_complete(_study(0, 10, 1), policy, now=30, sending=True)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_monitor_completes_and_queues_with_an_injected_clock(tmp_path: Path) -> None:
    clock = _Clock()
    ledger = Ledger(tmp_path / "l.sqlite3", clock=clock)
    ledger.record_instance(ReceivedInstance("1.2.3.4", "1.2.3", "1.2.3.5", "1.2", "1.2.840.10008.1.2.1",
                                            tmp_path / "x.dcm", "A", "127.0.0.1"))
    assoc = OpenAssociations()
    assoc.sent(1, "1.2.3")
    queued: list[str] = []

    def queue(study: Study) -> None:
        queued.append(study.study_uid)
        ledger.transition(study.study_uid, StudyState.QUEUED, expect=[StudyState.COMPLETE])

    monitor = CompletionMonitor(ledger, assoc, lambda ae: CompletionPolicy(quiet_period_s=2), queue, clock=clock)
    clock.now += 5
    assert monitor.tick() == []  # association still open
    assoc.closed(1)
    clock.now += 1
    assert monitor.tick() == ["1.2.3"]
    assert ledger.study("1.2.3").state == StudyState.QUEUED  # type: ignore[union-attr]
    assert monitor.tick() == []


def test_queue_failure_leaves_study_complete_and_retries_with_backoff(tmp_path: Path) -> None:
    clock = _Clock()
    ledger = Ledger(tmp_path / "l.sqlite3", clock=clock)
    ledger.record_instance(ReceivedInstance("1.2.3.4", "1.2.3", "1.2.3.5", "1.2", "1.2.840.10008.1.2.1",
                                            tmp_path / "x.dcm", "A", "127.0.0.1"))

    calls: list[float] = []

    def broken_then_fine(study: Study) -> None:
        calls.append(clock.now)
        if len(calls) < 3:
            raise ConnectionError("broker down")

    monitor = CompletionMonitor(ledger, OpenAssociations(), lambda ae: CompletionPolicy(quiet_period_s=0),
                                broken_then_fine, clock=clock)
    clock.now += 1
    assert monitor.tick() == []
    assert ledger.study("1.2.3").state == StudyState.COMPLETE  # type: ignore[union-attr]
    clock.now += 0.5
    assert monitor.tick() == []  # backing off: not retried yet
    clock.now += 0.5
    assert monitor.tick() == []  # second failure, next retry in 2 s
    clock.now += 2
    assert monitor.tick() == ["1.2.3"]
    assert calls == [1001.0, 1002.0, 1004.0]


def _stuck_study(tmp_path: Path, clock: _Clock, state: StudyState) -> Ledger:
    """A ledger holding study 1.2.3 in ``state`` with nobody working on it."""
    ledger = Ledger(tmp_path / "l.sqlite3", clock=clock)
    ledger.record_instance(ReceivedInstance("1.2.3.4", "1.2.3", "1.2.3.5", "1.2", "1.2.840.10008.1.2.1",
                                            tmp_path / "x.dcm", "A", "127.0.0.1"))
    ledger.transition("1.2.3", state)
    return ledger


def _requeued_after(ledger: Ledger, clock: _Clock, seconds: float, **monitor_settings: float) -> None:
    """The monitor leaves the study alone until ``seconds`` without progress, then queues it again."""
    queued: list[str] = []
    monitor = CompletionMonitor(ledger, OpenAssociations(), lambda ae: CompletionPolicy(),
                                lambda s: queued.append(s.study_uid), clock=clock, **monitor_settings)
    clock.now += seconds - 1
    monitor.tick()
    assert queued == []
    clock.now += 1
    monitor.tick()
    assert queued == ["1.2.3"]


def test_stalled_study_is_queued_again(tmp_path: Path) -> None:
    clock = _Clock()
    ledger = _stuck_study(tmp_path, clock, StudyState.ANALYSING)  # then the worker died
    _requeued_after(ledger, clock, 600, stalled_after_s=600)
    study = ledger.study("1.2.3")
    assert study is not None and "no progress for 600 s while analysing" in study.reason


def test_a_delivering_study_may_wait_for_its_next_attempt_before_it_counts_as_stalled(tmp_path: Path) -> None:
    clock = _Clock()
    ledger = _stuck_study(tmp_path, clock, StudyState.DELIVERING)  # waiting out a 600 s delivery back-off
    _requeued_after(ledger, clock, 720, stalled_after_s=120, delivery_wait_s=600)
    study = ledger.study("1.2.3")
    assert study is not None and "no progress for 720 s while delivering" in study.reason

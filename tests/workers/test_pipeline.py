"""The analysis and delivery tasks in one process: real models (shipped bundles), real ledger, real storescp."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread

from dermnode.kernel.addresses import Address
from dermnode.kernel.errors import InferenceError
from dermnode.kernel.messages import AnalysisJob, DeliveryJob, InstanceRef
from dermnode.kernel.settings import Settings, load_settings
from dicom_node import assignments as node_assignments
from dicom_node.assignments import Assignments
from dicom_node.delivery import Deliveries, Delivery
from dicom_node.ledger import DeliveryState, Ledger, ReceivedInstance, StudyState
from inference.models.predict import Analyzer
from inference.models.prediction import LesionPrediction
from inference.outputs.pixels import rgb_pixels
from tests import dcmtk
from tests.dciodvfy import dciodvfy_problems
from tests.spooled import spool_study
from workers import pipeline
from workers.app import WorkerRuntime, build_runtime
from workers.dispatch import ANALYSE_TASK
from workers.link import LocalLink
from workers.pipeline import StudyAnalysis


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.from_bundles(None, None, "cpu")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(None, {}, {"data_dir": tmp_path / "data", "send_attempts": 3, "send_backoff_s": 0.05,
                                    "network_timeout_s": 5})


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    ledger = Ledger(settings.ledger_path)
    yield ledger
    ledger.close()


@pytest.fixture
def destinations() -> list[Address]:
    """Where the node side of these tests delivers (empty: the outbox only)."""
    return []


@pytest.fixture
def link(settings: Settings, ledger: Ledger, destinations: list[Address]) -> Iterator[LocalLink]:
    """The node's side, as the embedded worker reaches it: assignments, outbox, deliveries."""
    deliveries = Deliveries(settings, ledger)
    node_side = Assignments(ledger, settings.outbox_dir, deliveries, lambda study: tuple(destinations),
                            settings.uid_prefix)
    yield LocalLink(node_side)
    deliveries.close()


@pytest.fixture
def runtime(settings: Settings, analyzer: Analyzer, link: LocalLink) -> WorkerRuntime:
    return build_runtime(settings, embedded_link=link, analyzer_factory=lambda: analyzer)


def _spool_study(tmp_path: Path, settings: Settings, ledger: Ledger, n: int = 2) -> str:
    return spool_study(tmp_path / "src", settings, ledger, n)


def _analyse(runtime: WorkerRuntime, job: AnalysisJob) -> dict[str, object]:
    return dict(runtime.app.tasks[ANALYSE_TASK].apply(kwargs={"message": job.to_message()}).get())


def _wait_state(ledger: Ledger, study_uid: str, states: set[StudyState], timeout: float = 60) -> StudyState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        study = ledger.study(study_uid)
        if study is not None and study.state in states:
            return study.state
        time.sleep(0.05)
    raise AssertionError(f"study {study_uid} never reached {states}: {ledger.study(study_uid)}")


def test_outputs_are_written_recorded_and_deterministic(
    tmp_path: Path, settings: Settings, ledger: Ledger, runtime: WorkerRuntime
) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger)
    first = _analyse(runtime, AnalysisJob(study_uid, 1))
    assert first["state"] == StudyState.ANALYSED, first["reason"]
    assert "no destination configured" in str(first["reason"])
    outputs = list(first["outputs"])  # type: ignore[call-overload]
    recorded = {o["sop_instance_uid"]: Path(o["path"]) for o in ledger.outputs(study_uid)}
    assert len(outputs) == 7 and set(outputs) == set(recorded) and all(p.is_file() for p in recorded.values())
    assert {o["kind"] for o in ledger.outputs(study_uid)} == {"seg", "attention-seg", "attention-levels-seg", "sr"}
    # a redelivered task produces the very same objects (same UIDs), replacing rather than duplicating
    ledger.transition(study_uid, StudyState.QUEUED)
    again = _analyse(runtime, AnalysisJob(study_uid, 1))
    assert sorted(again["outputs"]) == sorted(outputs)  # type: ignore[call-overload]


def test_delivery_runs_on_its_own_queue_and_closes_the_study(
    tmp_path: Path, settings: Settings, ledger: Ledger, runtime: WorkerRuntime, destinations: list[Address]
) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger, n=1)
    scp = dcmtk.StoreSCP(tmp_path / "pacs", ae_title="PACS")
    destinations.append(Address("PACS", "127.0.0.1", scp.port))
    try:
        outcome = _analyse(runtime, AnalysisJob(study_uid, 1))
        assert outcome["state"] == StudyState.DELIVERING
        assert _wait_state(ledger, study_uid, {StudyState.DELIVERED, StudyState.FAILED}) == StudyState.DELIVERED
        assert len(scp.wait_for(4)) == 4
    finally:
        scp.stop()
    [row] = ledger.deliveries(study_uid)
    assert row["state"] == DeliveryState.DELIVERED and row["attempts"] == 1


def test_unreachable_destination_is_retried_with_backoff_then_fails_with_reason(
    tmp_path: Path, settings: Settings, ledger: Ledger, runtime: WorkerRuntime, destinations: list[Address]
) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger, n=1)
    destinations.append(Address("PACS", "127.0.0.1", dcmtk.free_port()))
    assert _analyse(runtime, AnalysisJob(study_uid, 1))["state"] == StudyState.DELIVERING
    assert _wait_state(ledger, study_uid, {StudyState.DELIVERED, StudyState.FAILED}) == StudyState.FAILED
    study = ledger.study(study_uid)
    assert study is not None and "PACS@127.0.0.1" in study.reason and "no association" in study.reason
    [row] = ledger.deliveries(study_uid)
    assert settings.send_attempts is not None
    assert row["state"] == DeliveryState.FAILED and row["attempts"] == settings.send_attempts
    retries = [e for e in ledger.events(study_uid) if e.kind == "delivery-retrying"]
    assert len(retries) == settings.send_attempts - 1


def test_one_attempt_says_when_to_retry(tmp_path: Path, settings: Settings, ledger: Ledger) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger, n=1)
    ledger.transition(study_uid, StudyState.DELIVERING)
    job = DeliveryJob(study_uid, 1, Address("PACS", "127.0.0.1", dcmtk.free_port()), attempt=2)
    outcome = Delivery(settings, lambda: ledger).attempt(job)
    assert outcome.state == DeliveryState.RETRYING
    assert outcome.retry_in_s == pytest.approx(settings.send_backoff_s * 2)
    assert ledger.study(study_uid).state == StudyState.DELIVERING  # type: ignore[union-attr]


def test_stale_generation_is_skipped(
    tmp_path: Path, settings: Settings, ledger: Ledger, runtime: WorkerRuntime
) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger, n=1)
    assert _analyse(runtime, AnalysisJob(study_uid, 7))["state"] == "skipped"
    assert ledger.study(study_uid).state == StudyState.QUEUED  # type: ignore[union-attr]


def test_corrupt_spooled_file_fails_the_study_with_the_reason(
    tmp_path: Path, settings: Settings, ledger: Ledger, runtime: WorkerRuntime
) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger, n=1)
    [inst] = ledger.instances(study_uid)
    inst.path.write_bytes(inst.path.read_bytes()[:2000])  # disk corruption after acknowledgement
    outcome = _analyse(runtime, AnalysisJob(study_uid, 1))
    assert outcome["state"] == StudyState.FAILED
    study = ledger.study(study_uid)
    assert study is not None and study.state == StudyState.FAILED
    assert study.reason.startswith("analysis failed") and inst.sop_instance_uid in study.reason


def _report(ledger: Ledger, study_uid: str) -> Path:
    [sr] = [Path(o["path"]) for o in ledger.outputs(study_uid) if o["kind"] == "sr"]
    return sr


def _comments(path: Path) -> list[str]:
    report = dcmread(path)
    return [str(item.TextValue) for container in report.ContentSequence if container.ValueType == "CONTAINER"
            for item in container.get("ContentSequence", []) if item.ValueType == "TEXT"]


def test_a_bad_image_is_left_out_and_named_in_the_report(
    tmp_path: Path, settings: Settings, ledger: Ledger, runtime: WorkerRuntime
) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger, n=3)
    bad = ledger.instances(study_uid)[1]
    bad.path.write_bytes(bad.path.read_bytes()[:2000])  # disk corruption after acknowledgement
    outcome = _analyse(runtime, AnalysisJob(study_uid, 1))
    assert outcome["state"] == StudyState.ANALYSED
    assert len([o for o in ledger.outputs(study_uid) if o["kind"] == "seg"]) == 2
    sr = _report(ledger, study_uid)
    [note] = _comments(sr)
    assert note.startswith(f"Image {bad.sop_instance_uid} was not analysed: Could not decode the pixel data")
    assert dciodvfy_problems(sr) == []
    assert (sr.stat().st_mode & 0o777, sr.parent.stat().st_mode & 0o777) == (0o600, 0o700)  # private outbox
    assert [e.sop_instance_uid for e in ledger.events(study_uid) if e.kind == "instance-not-analysed"] == [
        bad.sop_instance_uid
    ]


class FailsOn:
    """An analyzer that raises InferenceError for any batch holding one particular image."""

    def __init__(self, analyzer: Analyzer, bad: np.ndarray) -> None:
        self.analyzer, self.bad = analyzer, bad

    def analyze(self, images: list[np.ndarray], *, attention: bool = True) -> list[LesionPrediction]:
        if any(np.array_equal(image, self.bad) for image in images):
            raise InferenceError("the model could not run on this image (test)")
        return self.analyzer.analyze(images, attention=attention)


def test_an_image_the_model_fails_on_costs_only_itself(
    tmp_path: Path, settings: Settings, ledger: Ledger, analyzer: Analyzer, link: LocalLink
) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger, n=3)
    bad = ledger.instances(study_uid)[2]
    failing = FailsOn(analyzer, rgb_pixels(dcmread(bad.path)))
    rt = build_runtime(settings, embedded_link=link, analyzer_factory=lambda: failing)  # type: ignore[arg-type, return-value]
    assert _analyse(rt, AnalysisJob(study_uid, 1))["state"] == StudyState.ANALYSED
    assert _comments(_report(ledger, study_uid)) == [
        f"Image {bad.sop_instance_uid} was not analysed: the model could not run on this image (test)"
    ]


def test_a_study_with_no_analysable_image_fails_naming_each(
    tmp_path: Path, settings: Settings, ledger: Ledger, runtime: WorkerRuntime
) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger, n=2)
    for inst in ledger.instances(study_uid):
        inst.path.write_bytes(inst.path.read_bytes()[:2000])
    assert _analyse(runtime, AnalysisJob(study_uid, 1))["state"] == StudyState.FAILED
    study = ledger.study(study_uid)
    assert study is not None and "none of the 2 image(s)" in study.reason
    assert all(i.sop_instance_uid in study.reason for i in ledger.instances(study_uid))


def _no_space(*args: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_no_space_on_the_node_is_retried_with_back_off(
    tmp_path: Path, settings: Settings, ledger: Ledger, analyzer: Analyzer, link: LocalLink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger, n=1)
    real_write = node_assignments.write_durably
    failures = iter([True, True])
    monkeypatch.setattr(node_assignments, "write_durably",
                        lambda path, write: _no_space() if next(failures, False) else real_write(path, write))
    waits: list[float] = []
    analysis = StudyAnalysis(settings, analyzer_factory=lambda: analyzer, wait=waits.append)
    outcome = analysis.run(AnalysisJob(study_uid, 1), link)
    assert outcome.state == StudyState.ANALYSED
    assert waits == [settings.analysis_retry.delay(1), settings.analysis_retry.delay(2)]
    assert len(ledger.outputs(study_uid)) == 4


def test_no_space_that_lasts_fails_the_study_after_the_last_attempt(
    tmp_path: Path, ledger: Ledger, analyzer: Analyzer, link: LocalLink, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(None, {}, {"data_dir": tmp_path / "data", "analysis_attempts": 3})
    study_uid = _spool_study(tmp_path, settings, ledger, n=1)
    monkeypatch.setattr(node_assignments, "write_durably", lambda path, write: _no_space())
    waits: list[float] = []
    analysis = StudyAnalysis(settings, analyzer_factory=lambda: analyzer, wait=waits.append)
    outcome = analysis.run(AnalysisJob(study_uid, 1), link)
    assert outcome.state == StudyState.FAILED
    assert "no space left on a disk after 3 attempt(s)" in outcome.reason
    assert len(waits) == 2


def test_the_heartbeat_records_progress_until_the_analysis_ends(
    tmp_path: Path, ledger: Ledger, link: LocalLink
) -> None:
    ledger.record_instance(ReceivedInstance("1.2.9", "1.2.3", "1.2.4", "1.2.840.10008.5.1.4.1.1.77.1.7",
                                            "1.2.840.10008.1.2.1", tmp_path / "x.dcm", "STORESCU", "127.0.0.1"))
    ledger.transition("1.2.3", StudyState.ANALYSING)
    before = ledger.study("1.2.3").updated  # type: ignore[union-attr]
    beats = threading.Event()
    touch = ledger.touch

    def counting_touch(*args: object) -> bool:
        beats.set()
        return touch(*args)  # type: ignore[arg-type]

    ledger.touch = counting_touch  # type: ignore[method-assign, assignment]
    with pipeline.Heartbeat(link, AnalysisJob("1.2.3", 1), 0.01):
        assert beats.wait(10)
    assert ledger.study("1.2.3").updated > before  # type: ignore[union-attr]


class OneAtATime:
    """An analyzer that fails the test if two threads are inside ``analyze`` at once."""

    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer, self.inside, self.overlaps = analyzer, 0, 0
        self._count = threading.Lock()

    def analyze(self, images: list[np.ndarray], *, attention: bool = True) -> list[LesionPrediction]:
        with self._count:
            self.inside += 1
            self.overlaps += self.inside > 1
        try:
            return self.analyzer.analyze(images, attention=attention)
        finally:
            with self._count:
                self.inside -= 1


class TogetherLink:
    """A link whose jobs wait for each other before they read their first image."""

    def __init__(self, link: LocalLink, barrier: threading.Barrier) -> None:
        self.link, self.barrier, self.waited = link, barrier, threading.local()

    def __getattr__(self, name: str) -> object:
        return getattr(self.link, name)

    def fetch(self, job: AnalysisJob, ref: InstanceRef) -> Dataset:
        if not getattr(self.waited, "done", False):
            self.waited.done = True
            self.barrier.wait(30)
        return self.link.fetch(job, ref)


def test_threads_share_one_analyzer_one_at_a_time_and_batch_across_studies(
    tmp_path: Path, settings: Settings, ledger: Ledger, analyzer: Analyzer, link: LocalLink
) -> None:
    studies = [_spool_study(tmp_path / str(i), settings, ledger, n=2) for i in range(3)]
    guarded = OneAtATime(analyzer)
    analysis = StudyAnalysis(settings.model_copy(update={"batch_wait_s": 2.0}),
                             analyzer_factory=lambda: guarded)  # type: ignore[arg-type, return-value]
    together = TogetherLink(link, threading.Barrier(len(studies)))  # every job is running before one reads
    threads = [threading.Thread(target=analysis.run, args=(AnalysisJob(s, 1), together))
               for s in studies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert guarded.overlaps == 0
    assert {ledger.study(s).state for s in studies} == {StudyState.ANALYSED}  # type: ignore[union-attr]
    assert max(analysis.batcher.passes) > 2, f"no pass took images of two studies: {list(analysis.batcher.passes)}"
    assert max(analysis.batcher.passes) > 2, f"no pass took images of two studies: {list(analysis.batcher.passes)}"

"""Analysis of one complete study: spool → pixels → models → SEG + SR → outbox → delivery jobs.

Every path ends in a ledger state: delivering (then delivered or failed, see :mod:`workers.delivery`),
analysed (no destination), or failed with a reason.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import Dataset, dcmread

from dermnode.kernel.errors import DermnodeError, InferenceError
from dermnode.kernel.files import fsync_dir, private_dir
from dermnode.kernel.messages import AnalysisJob
from dermnode.kernel.settings import Settings
from dicom_node.ledger import Ledger, StudyState
from inference.models.predict import Analyzer
from inference.models.prediction import LesionPrediction
from inference.outputs.build import build_outputs
from inference.outputs.pixels import rgb_pixels
from inference.outputs.sr import NotAnalysed, report_uids
from workers.delivery import DeliveryScheduler, start_deliveries

LOG = logging.getLogger("dermnode.worker")

AnalyzerFactory = Callable[[], Analyzer]


@dataclass
class StudyOutcome:
    study_uid: str
    generation: int
    state: str
    outputs: list[str] = field(default_factory=list)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"study_uid": self.study_uid, "generation": self.generation, "state": self.state,
                "outputs": self.outputs, "reason": self.reason}


def _write_durably(ds: Dataset, path: Path) -> None:
    """Temp file (0600) → fsync → rename → fsync of the folder (0700), as the spool writes."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".writing-", suffix=".dcm")
    with os.fdopen(fd, "wb") as f:
        ds.save_as(f, enforce_file_format=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _read_spooled(path: Path, sop_instance_uid: str) -> Dataset:
    try:
        ds = dcmread(path)
        ds.PixelData  # noqa: B018  (a truncated file fails here, not later in a model)
    except Exception as e:
        raise InferenceError(f"spooled instance {sop_instance_uid} at {path} cannot be read: {e}") from e
    return ds


def is_no_space(error: BaseException) -> bool:
    """True if ``error`` or an error it was raised from means a full disk (ENOSPC, EDQUOT, SQLite "full")."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(seen, sqlite3.OperationalError) and "full" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Heartbeat:
    """While a worker analyses, refresh the study's progress time so the node does not think it stalled.

    A killed worker stops beating: after ``stalled_after_s`` the node queues the study again.
    """

    def __init__(self, ledger: Ledger, job: AnalysisJob, interval_s: float) -> None:
        self._ledger, self._job, self._interval = ledger, job, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job.study_uid}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._ledger.touch(self._job.study_uid, self._job.generation, StudyState.ANALYSING)
            except DermnodeError as e:
                LOG.warning("study %s: progress not recorded: %s", self._job.study_uid, e)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class StudyAnalysis:
    """Runs jobs for one worker process; the models load once, on first use."""

    def __init__(
        self,
        settings: Settings,
        scheduler: DeliveryScheduler,
        ledger: Callable[[], Ledger],
        analyzer_factory: AnalyzerFactory | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        wait: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._wait = wait
        # One Analyzer per process; its Grad-CAM hooks are not thread-safe, so threads take turns (--pool threads).
        self._analyzer_lock = threading.Lock()
        self._scheduler = scheduler
        self._ledger = ledger
        self._analyzer: Analyzer | None = None
        self._analyzer_factory = analyzer_factory or (
            lambda: Analyzer.from_bundles(settings.classifier_bundle, settings.segmenter_bundle, settings.device)
        )
        self._clock = clock

    @property
    def ledger(self) -> Ledger:
        return self._ledger()

    @property
    def analyzer(self) -> Analyzer:
        with self._analyzer_lock:
            if self._analyzer is None:
                self._analyzer = self._analyzer_factory()
            return self._analyzer

    def run(self, job: AnalysisJob) -> StudyOutcome:
        ledger = self.ledger
        moved = ledger.transition(
            job.study_uid,
            StudyState.ANALYSING,
            expect=[StudyState.COMPLETE, StudyState.QUEUED, StudyState.ANALYSING],
            generation=job.generation,
            count_attempt=True,
        )
        if not moved:
            study = ledger.study(job.study_uid)
            LOG.info("study %s generation %d is stale or finished (%s); skipping", job.study_uid,
                     job.generation, study.state if study else "unknown")
            return StudyOutcome(job.study_uid, job.generation, "skipped", reason="stale job")
        try:
            with Heartbeat(ledger, job, self._settings.stalled_after_s / 4):
                outputs = self._analyse_retrying(job)
        except DermnodeError as e:
            reason = f"analysis failed: {e}"
            LOG.error("study %s: %s", job.study_uid, reason)
            ledger.transition(job.study_uid, StudyState.FAILED, generation=job.generation, reason=reason)
            return StudyOutcome(job.study_uid, job.generation, StudyState.FAILED, reason=reason)
        except Exception as e:
            reason = f"analysis crashed: {type(e).__name__}: {e}"
            LOG.exception("study %s: %s", job.study_uid, reason)
            ledger.transition(job.study_uid, StudyState.FAILED, generation=job.generation, reason=reason)
            raise
        files = [str(p) for p in outputs]
        if not job.destinations:
            reason = "no destination configured; outputs are in the outbox"
            ledger.transition(job.study_uid, StudyState.ANALYSED, generation=job.generation, reason=reason)
            return StudyOutcome(job.study_uid, job.generation, StudyState.ANALYSED, files, reason)
        if not ledger.transition(job.study_uid, StudyState.DELIVERING, expect=[StudyState.ANALYSING],
                                 generation=job.generation):
            return StudyOutcome(job.study_uid, job.generation, "skipped", files, "re-opened during analysis")
        start_deliveries(ledger, self._scheduler, job.study_uid, job.generation, job.destinations)
        return StudyOutcome(job.study_uid, job.generation, StudyState.DELIVERING, files)

    def _analyse_retrying(self, job: AnalysisJob) -> list[Path]:
        """:meth:`_analyse`, retried with back-off while the disk is full (``analysis_retry``)."""
        policy = self._settings.analysis_retry
        attempt = 1
        while True:
            try:
                return self._analyse(job)
            except Exception as e:
                if not is_no_space(e):
                    raise
                if policy.gives_up_after(attempt):
                    raise InferenceError(f"no space left on a disk after {attempt} attempt(s): {e}") from e
                delay = policy.delay(attempt)
                reason = f"no space left on a disk (attempt {attempt}); retrying in {delay:g} s: {e}"
                LOG.warning("study %s: %s", job.study_uid, reason)
                self.ledger.transition(job.study_uid, StudyState.ANALYSING, expect=[StudyState.ANALYSING],
                                       generation=job.generation, reason=reason)
                self._wait(delay)
                attempt += 1

    def _previous_reports(
        self, job: AnalysisJob, sources: list[Dataset], predictions: list[LesionPrediction]
    ) -> list[Dataset] | None:
        """Earlier, different reports on this study (older generations): the new one's predecessors."""
        _, new_uid = report_uids(sources, predictions[0].classifier, predictions[0].segmenter,
                                 self._settings.uid_prefix)
        earlier = []
        for out in self.ledger.outputs(job.study_uid):
            if out["kind"] == "sr" and out["generation"] < job.generation and Path(out["path"]).is_file():
                earlier.append(dcmread(out["path"], stop_before_pixels=True))
        unique = {str(ds.SOPInstanceUID): ds for ds in earlier if str(ds.SOPInstanceUID) != new_uid}
        return list(unique.values()) or None

    def _predict(
        self, sources: list[Dataset], images: list[npt.NDArray[np.uint8]], skipped: list[NotAnalysed]
    ) -> list[tuple[Dataset, npt.NDArray[np.uint8], LesionPrediction]]:
        """Predict the batch; if it fails, each image alone, so one bad image costs only itself."""
        analyzer = self.analyzer
        try:
            with self._analyzer_lock:
                predictions = analyzer.analyze(images, attention=self._settings.attention_maps)
            return list(zip(sources, images, predictions, strict=True))
        except InferenceError as e:
            if len(images) == 1:
                skipped.append(NotAnalysed(str(sources[0].SOPInstanceUID), str(e)))
                return []
        pairs = zip(sources, images, strict=True)
        return [kept for ds, image in pairs for kept in self._predict([ds], [image], skipped)]

    def _analyse(self, job: AnalysisJob) -> list[Path]:
        instances = self.ledger.instances(job.study_uid)
        if not instances:
            raise DermnodeError(f"study {job.study_uid} has no instances in the ledger")
        sources: list[Dataset] = []
        images: list[npt.NDArray[np.uint8]] = []
        skipped: list[NotAnalysed] = []
        for instance in instances:
            try:
                ds = _read_spooled(instance.path, instance.sop_instance_uid)
                image = rgb_pixels(ds)
            except InferenceError as e:  # this image only: the others of the study are still analysed
                skipped.append(NotAnalysed(instance.sop_instance_uid, str(e)))
                continue
            sources.append(ds)
            images.append(image)
        analysed = self._predict(sources, images, skipped) if sources else []
        sources = [ds for ds, _, _ in analysed]
        images = [image for _, image, _ in analysed]
        predictions = [prediction for _, _, prediction in analysed]
        for item in skipped:
            LOG.warning("study %s: image %s not analysed: %s", job.study_uid, item.sop_instance_uid, item.reason)
            self.ledger.record_not_analysed(job.study_uid, item.sop_instance_uid, item.reason)
        if not sources:
            raise InferenceError(
                f"none of the {len(instances)} image(s) of study {job.study_uid} could be analysed: "
                + "; ".join(item.note() for item in skipped)
            )
        objects = build_outputs(
            sources, images, predictions, uid_prefix=self._settings.uid_prefix, content_datetime=self._clock(),
            attention=self._settings.attention_maps,
            previous_reports=self._previous_reports(job, sources, predictions),
            not_analysed=skipped,
        )
        outbox = self._settings.outbox_dir / job.study_uid / f"g{job.generation}"
        paths = []
        for obj in objects:
            kind, ds = obj.kind, obj.dataset
            path = outbox / f"{kind}-{ds.SOPInstanceUID}.dcm"
            _write_durably(ds, path)
            self.ledger.record_output(job.study_uid, job.generation, str(ds.SOPInstanceUID), kind,
                                      str(ds.SOPClassUID), path)
            paths.append(path)
        LOG.info("study %s: %d image(s) analysed, %d not, %d object(s) in %s", job.study_uid, len(sources),
                 len(skipped), len(paths), outbox)
        return paths

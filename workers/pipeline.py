"""Analysis of one complete study: claim → images → models → SEG + SR → stored on the node → report.

The worker holds no state of its own: it reads and writes only through its :class:`~workers.link.NodeLink`,
and the node turns the report into a ledger state (delivering, analysed, or failed with a reason).
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import Dataset

from dermnode.kernel.errors import DermnodeError, InferenceError
from dermnode.kernel.messages import (
    AnalysisJob,
    AnalysisReport,
    Claim,
    NotAnalysedRef,
    OutputOptions,
    OutputRef,
)
from dermnode.kernel.settings import Settings
from inference.models.predict import Analyzer
from inference.models.prediction import LesionPrediction
from inference.outputs.build import build_outputs
from inference.outputs.pixels import rgb_pixels
from inference.outputs.sr import NotAnalysed, report_uids
from workers.batching import Batcher
from workers.link import NodeLink, NodeUnreachable

LOG = logging.getLogger("dermnode.worker")

AnalyzerFactory = Callable[[], Analyzer]
Image = npt.NDArray[np.uint8]


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
    """While a worker analyses, tell the node every ``interval_s`` that the job is alive.

    A killed worker stops beating: after ``stalled_after_s`` the node queues the study again.
    """

    def __init__(self, link: NodeLink, job: AnalysisJob, interval_s: float) -> None:
        self._link, self._job, self._interval = link, job, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job.study_uid}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._link.heartbeat(self._job)
            except DermnodeError as e:
                LOG.warning("study %s: progress not recorded: %s", self._job.study_uid, e)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class StudyAnalysis:
    """Runs jobs for one worker process; the models load once, on first use; images of jobs running at the
    same time (``--pool threads``) share forward passes through one :class:`Batcher`."""

    def __init__(
        self,
        settings: Settings,
        analyzer_factory: AnalyzerFactory | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        wait: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._wait = wait
        # One Analyzer per process; its Grad-CAM hooks are not thread-safe: the batcher runs one pass at a time,
        # and the lock also covers the first load.
        self._analyzer_lock = threading.Lock()
        self._analyzer: Analyzer | None = None
        self._analyzer_factory = analyzer_factory or (
            lambda: Analyzer.from_bundles(settings.classifier_bundle, settings.segmenter_bundle, settings.device)
        )
        self._clock = clock
        self.batcher: Batcher[Image, LesionPrediction] = Batcher(
            self._forward, settings.batch_size, settings.batch_wait_s)

    @property
    def analyzer(self) -> Analyzer:
        with self._analyzer_lock:
            if self._analyzer is None:
                self._analyzer = self._analyzer_factory()
            return self._analyzer

    def _options(self, job: AnalysisJob) -> OutputOptions:
        return job.options or OutputOptions(self._settings.uid_prefix, self._settings.attention_maps)

    def _forward(self, images: list[Image]) -> list[LesionPrediction]:
        analyzer = self.analyzer
        with self._analyzer_lock:
            return analyzer.analyze(images, attention=self._settings.attention_maps)

    def run(self, job: AnalysisJob, link: NodeLink) -> StudyOutcome:
        try:
            claim = link.claim(job)
            if claim is None:
                return StudyOutcome(job.study_uid, job.generation, "skipped", reason="stale job")
            heartbeat = job.node.heartbeat_s if job.node else self._settings.stalled_after_s / 4
            try:
                with self.batcher.job(), Heartbeat(link, job, heartbeat):
                    report = self._analyse_retrying(job, claim, link)
            except NodeUnreachable:
                raise
            except DermnodeError as e:
                report = AnalysisReport(failure=f"analysis failed: {e}")
            except Exception as e:
                LOG.exception("study %s: analysis crashed", job.study_uid)
                link.finish(job, AnalysisReport(failure=f"analysis crashed: {type(e).__name__}: {e}"))
                raise
            finished = link.finish(job, report)
        except NodeUnreachable as e:
            LOG.error("study %s: %s; job dropped (the node queues it again)", job.study_uid, e)
            return StudyOutcome(job.study_uid, job.generation, "dropped", reason=str(e))
        outputs = [o.sop_instance_uid for o in report.outputs]
        return StudyOutcome(job.study_uid, job.generation, finished.state, outputs, report.failure or finished.reason)

    def _analyse_retrying(self, job: AnalysisJob, claim: Claim, link: NodeLink) -> AnalysisReport:
        """:meth:`_analyse`, retried with back-off while the node's disk is full (``analysis_retry``)."""
        policy = self._settings.analysis_retry
        attempt = 1
        while True:
            try:
                return self._analyse(job, claim, link)
            except Exception as e:
                if not is_no_space(e):
                    raise
                if policy.gives_up_after(attempt):
                    raise InferenceError(f"no space left on a disk after {attempt} attempt(s): {e}") from e
                delay = policy.delay(attempt)
                LOG.warning("study %s: no space left on a disk (attempt %d); retrying in %g s: %s", job.study_uid,
                            attempt, delay, e)
                link.heartbeat(job)
                self._wait(delay)
                attempt += 1

    def _previous_reports(self, job: AnalysisJob, claim: Claim, link: NodeLink, sources: list[Dataset],
                          predictions: list[LesionPrediction]) -> list[Dataset] | None:
        """Earlier, different reports on this study (older generations): the new one's predecessors."""
        _, new_uid = report_uids(sources, predictions[0].classifier, predictions[0].segmenter,
                                 self._options(job).uid_prefix)
        earlier = []
        for ref in claim.previous_reports:
            if ref.sop_instance_uid == new_uid:
                continue
            try:
                earlier.append(link.fetch(job, ref))
            except InferenceError as e:
                LOG.warning("study %s: earlier report %s not read: %s", job.study_uid, ref.sop_instance_uid, e)
        unique = {str(ds.SOPInstanceUID): ds for ds in earlier}
        return list(unique.values()) or None

    def _predict(
        self, sources: list[Dataset], images: list[Image], skipped: list[NotAnalysed]
    ) -> list[tuple[Dataset, Image, LesionPrediction]]:
        """Predict the images in a shared pass; if that fails, each image alone: a bad image costs only itself."""
        try:
            predictions = self.batcher.submit(images)
            return list(zip(sources, images, predictions, strict=True))
        except InferenceError as e:
            if len(images) == 1:
                skipped.append(NotAnalysed(str(sources[0].SOPInstanceUID), str(e)))
                return []
        pairs = zip(sources, images, strict=True)
        return [kept for ds, image in pairs for kept in self._predict([ds], [image], skipped)]

    def _analyse(self, job: AnalysisJob, claim: Claim, link: NodeLink) -> AnalysisReport:
        if not claim.instances:
            raise DermnodeError(f"study {job.study_uid} has no instances in the ledger")
        sources: list[Dataset] = []
        images: list[Image] = []
        skipped: list[NotAnalysed] = []
        for ref in claim.instances:
            try:
                ds = link.fetch(job, ref)
                if "PixelData" not in ds:
                    raise InferenceError(f"instance {ref.sop_instance_uid} has no pixel data")
                image = rgb_pixels(ds)
            except InferenceError as e:  # this image only: the others of the study are still analysed
                skipped.append(NotAnalysed(ref.sop_instance_uid, str(e)))
                continue
            except Exception as e:  # a damaged file fails on access, with many exception types
                skipped.append(NotAnalysed(ref.sop_instance_uid, f"cannot be read: {type(e).__name__}: {e}"))
                continue
            sources.append(ds)
            images.append(image)
        analysed = self._predict(sources, images, skipped) if sources else []
        sources = [ds for ds, _, _ in analysed]
        images = [image for _, image, _ in analysed]
        predictions = [prediction for _, _, prediction in analysed]
        not_analysed = tuple(NotAnalysedRef(item.sop_instance_uid, item.reason) for item in skipped)
        if not sources:
            raise InferenceError(
                f"none of the {len(claim.instances)} image(s) of study {job.study_uid} could be analysed: "
                + "; ".join(item.note() for item in skipped)
            )
        options = self._options(job)
        objects = build_outputs(
            sources, images, predictions, uid_prefix=options.uid_prefix, content_datetime=self._clock(),
            attention=options.attention,
            previous_reports=self._previous_reports(job, claim, link, sources, predictions),
            not_analysed=skipped,
        )
        link.store(job, [obj.dataset for obj in objects])
        LOG.info("study %s: %d image(s) analysed, %d not, %d object(s) stored on the node", job.study_uid,
                 len(sources), len(skipped), len(objects))
        return AnalysisReport(tuple(OutputRef(str(o.dataset.SOPInstanceUID), o.kind) for o in objects), not_analysed)

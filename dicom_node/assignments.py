"""The node's side of analysis jobs: the one place where a job changes the node's state.

A worker, in this process (embedded) or on another host (through :mod:`dicom_node.worker_api`), claims a job,
reads the study's images, beats a heartbeat while it works, stores its outputs and reports the end of the job.
Each step is a call here, and only the node writes its ledger, spool and outbox:

- :meth:`Assignments.claim` moves the study to "analysing" (the stale or finished job is refused);
- :meth:`Assignments.store` writes one output durably into the outbox (idempotent: outputs have
  deterministic UIDs, so a job run twice stores each object once);
- :meth:`Assignments.finish` records the outputs and left-out images and starts the deliveries, once per
  generation: a duplicate report (a job re-run after its worker was presumed dead) is recognised and ignored.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from dermnode.kernel.addresses import Address
from dermnode.kernel.errors import DermnodeError
from dermnode.kernel.files import write_durably
from dermnode.kernel.messages import AnalysisReport, Claim, InstanceRef
from dicom_node.contexts import (
    COMPREHENSIVE_3D_SR_STORAGE,
    COMPREHENSIVE_SR_STORAGE,
    ENHANCED_SR_STORAGE,
    SEGMENTATION_STORAGE,
)
from dicom_node.delivery import Deliveries
from dicom_node.ledger import Ledger, Study, StudyState

LOG = logging.getLogger("dermnode.assignments")

#: What a worker may store: segmentations and structured reports.
OUTPUT_SOP_CLASSES = frozenset({SEGMENTATION_STORAGE, COMPREHENSIVE_3D_SR_STORAGE, COMPREHENSIVE_SR_STORAGE,
                                ENHANCED_SR_STORAGE})
OUTPUT_KINDS = frozenset({"seg", "attention-seg", "attention-levels-seg", "sr"})


class RejectedOutput(DermnodeError):
    """A stored object that is not an output of this study (wrong study, class or UID)."""


class StaleJob(DermnodeError):
    """The job's generation is not the study's current one, or the study is no longer being analysed."""


@dataclass(frozen=True)
class Finished:
    """What :meth:`Assignments.finish` did: the study's new state, or ``skipped`` for a duplicate report."""

    state: str
    reason: str = ""


class Assignments:
    def __init__(
        self,
        ledger: Ledger,
        outbox_dir: Path,
        deliveries: Deliveries,
        destinations_for: Callable[[Study], tuple[Address, ...]],
        uid_prefix: str,
        takeover_after_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``takeover_after_s``: a job may take over a study that another job is analysing only once that one
        has shown no progress for this long (heartbeats come every ``stalled_after_s / 4``)."""
        self._takeover_after = takeover_after_s
        self._clock = clock
        self._ledger = ledger
        self._outbox = outbox_dir
        self._deliveries = deliveries
        self._destinations_for = destinations_for
        self._uid_prefix = uid_prefix

    def outbox(self, study_uid: str, generation: int) -> Path:
        return self._outbox / study_uid / f"g{generation}"

    def claim(self, study_uid: str, generation: int) -> Claim | None:
        """Start analysing ``generation``; None if the job is stale, the study finished, or another job is
        analysing it and still beating (a duplicate message: the broker redelivered it, or the node queued
        the study again while it waited in a long queue)."""
        moved = self._ledger.transition(
            study_uid, StudyState.ANALYSING, expect=[StudyState.COMPLETE, StudyState.QUEUED],
            generation=generation, count_attempt=True,
        )
        if not moved:
            study = self._ledger.study(study_uid)
            silent = self._clock() - study.updated if study is not None else 0.0
            if (study is not None and study.state == StudyState.ANALYSING and study.generation == generation
                    and silent >= self._takeover_after):
                moved = self._ledger.transition(
                    study_uid, StudyState.ANALYSING, expect=[StudyState.ANALYSING], generation=generation,
                    count_attempt=True, reason=f"taken over: no progress for {silent:.0f} s",
                )
            if not moved:
                LOG.info("study %s generation %d is stale, finished or being analysed (%s); job skipped",
                         study_uid, generation, study.state if study else "unknown")
                return None
        instances = tuple(InstanceRef(i.study_uid, i.series_uid, i.sop_instance_uid)
                          for i in self._ledger.instances(study_uid))
        earlier = tuple(
            InstanceRef(study_uid, "", str(o["sop_instance_uid"]))
            for o in self._ledger.outputs(study_uid)
            if o["kind"] == "sr" and o["generation"] < generation and Path(o["path"]).is_file()
        )
        return Claim(instances, earlier)

    def path_of(self, study_uid: str, sop_instance_uid: str) -> Path | None:
        """The file of an instance or an output of the study (what a worker may retrieve), if any."""
        for instance in self._ledger.instances(study_uid):
            if instance.sop_instance_uid == sop_instance_uid:
                return instance.path
        for output in self._ledger.outputs(study_uid):
            if output["sop_instance_uid"] == sop_instance_uid:
                return Path(output["path"])
        return None

    def heartbeat(self, study_uid: str, generation: int) -> bool:
        """Record progress; False if the study is no longer being analysed at this generation (stop)."""
        return self._ledger.touch(study_uid, generation, StudyState.ANALYSING)

    def store(self, study_uid: str, generation: int, data: bytes) -> tuple[str, str]:
        """Write one output (Part 10 bytes) into the generation's outbox; returns its SOP class and instance UIDs.

        Idempotent while the generation is analysed: the same UID is written once more in place. Raises
        :class:`RejectedOutput` for anything but a SEG or SR of this study with a UID of this node's root,
        :class:`StaleJob` once the generation is no longer being analysed (superseded or finished).
        """
        try:
            ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
            sop_class, sop_uid, study = str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)
        except (InvalidDicomError, AttributeError, ValueError, EOFError, OSError) as e:
            raise RejectedOutput(f"not a DICOM Part 10 object with SOP class, instance and study UIDs: "
                                 f"{type(e).__name__}") from e
        if study != study_uid:
            raise RejectedOutput(f"object {sop_uid} belongs to study {study}, not {study_uid}")
        if sop_class not in OUTPUT_SOP_CLASSES:
            raise RejectedOutput(f"object {sop_uid} has SOP class {sop_class}: only SEG and SR outputs are stored")
        if not sop_uid.startswith(self._uid_prefix) or "/" in sop_uid or len(sop_uid) > 64:
            raise RejectedOutput(f"object {sop_uid} does not have a UID under this node's root {self._uid_prefix}")
        current = self._ledger.study(study_uid)
        if current is None or current.generation != generation or current.state != StudyState.ANALYSING:
            # A finished generation's outbox is what was delivered: a late duplicate never rewrites it.
            raise StaleJob(f"study {study_uid} generation {generation} is not being analysed")
        write_durably(self.outbox(study_uid, generation) / f"{sop_uid}.dcm", lambda out: out.write(data))
        return sop_class, sop_uid

    def finish(self, study_uid: str, generation: int, report: AnalysisReport) -> Finished:
        """Close a job: failed with the reason, or outputs recorded and deliveries started (once)."""
        study = self._ledger.study(study_uid)
        if study is None or study.generation != generation or study.state != StudyState.ANALYSING:
            LOG.info("study %s generation %d: report of a job already finished or superseded; ignored",
                     study_uid, generation)
            return Finished("skipped", "duplicate or stale report")
        for item in report.not_analysed:
            LOG.warning("study %s: image %s not analysed: %s", study_uid, item.sop_instance_uid, item.reason)
            self._ledger.record_not_analysed(study_uid, item.sop_instance_uid, item.reason)
        if report.failure:
            LOG.error("study %s: %s", study_uid, report.failure)
            self._ledger.transition(study_uid, StudyState.FAILED, expect=[StudyState.ANALYSING],
                                    generation=generation, reason=report.failure)
            return Finished(StudyState.FAILED, report.failure)
        outbox = self.outbox(study_uid, generation)
        for output in report.outputs:
            path = outbox / f"{output.sop_instance_uid}.dcm"
            if output.kind not in OUTPUT_KINDS or "/" in output.sop_instance_uid or not path.is_file():
                raise RejectedOutput(f"output {output.sop_instance_uid} ({output.kind}) was not stored first")
            sop_class = str(dcmread(path, stop_before_pixels=True).SOPClassUID)
            self._ledger.record_output(study_uid, generation, output.sop_instance_uid, output.kind, sop_class, path)
        if not report.outputs:
            raise RejectedOutput("a successful report names no outputs")
        LOG.info("study %s: %d object(s) in %s", study_uid, len(report.outputs), outbox)
        destinations = self._destinations_for(study)
        if not destinations:
            reason = "no destination configured; outputs are in the outbox"
            self._ledger.transition(study_uid, StudyState.ANALYSED, expect=[StudyState.ANALYSING],
                                    generation=generation, reason=reason)
            return Finished(StudyState.ANALYSED, reason)
        if not self._ledger.transition(study_uid, StudyState.DELIVERING, expect=[StudyState.ANALYSING],
                                       generation=generation):
            return Finished("skipped", "re-opened during analysis")
        self._deliveries.start(study_uid, generation, destinations)
        return Finished(StudyState.DELIVERING)

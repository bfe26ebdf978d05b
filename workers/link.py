"""How a worker talks to the node that owns a job: claim it, read its images, beat, store, report.

Two implementations of one protocol: :class:`LocalLink` for the embedded worker (calls
:class:`~dicom_node.assignments.Assignments` in the node's process) and :class:`workers.remote.HttpLink` for a
worker on another host (the node's worker API: WADO-RS, STOW-RS and job events over HTTP). The analysis
itself (:mod:`workers.pipeline`) cannot tell them apart.
"""

from __future__ import annotations

import io
from typing import Protocol

from pydicom import Dataset, dcmread

from dermnode.kernel.errors import DermnodeError, InferenceError
from dermnode.kernel.messages import AnalysisJob, AnalysisReport, Claim, InstanceRef
from dicom_node.assignments import Assignments, Finished


class NodeUnreachable(DermnodeError):
    """The node did not answer (down, restarting, network): the job is dropped; the node queues the study
    again when it sees no progress (``stalled_after_s``) or when it restarts."""


class NodeLink(Protocol):
    def claim(self, job: AnalysisJob) -> Claim | None:
        """Start the job; None if it is stale or its study finished (drop it)."""

    def fetch(self, job: AnalysisJob, ref: InstanceRef) -> Dataset:
        """One instance of the job's study; :class:`InferenceError` if it cannot be read."""

    def heartbeat(self, job: AnalysisJob) -> None:
        """Tell the node the job is still running."""

    def store(self, job: AnalysisJob, outputs: list[Dataset]) -> None:
        """Store the outputs durably on the node (idempotent); OSError(ENOSPC) if its disk is full."""

    def finish(self, job: AnalysisJob, report: AnalysisReport) -> Finished:
        """Report the end of the job; the node records it and starts the deliveries."""


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class LocalLink:
    """The embedded worker's link: direct calls into the node's :class:`Assignments`."""

    def __init__(self, assignments: Assignments) -> None:
        self._assignments = assignments

    def claim(self, job: AnalysisJob) -> Claim | None:
        return self._assignments.claim(job.study_uid, job.generation)

    def fetch(self, job: AnalysisJob, ref: InstanceRef) -> Dataset:
        path = self._assignments.path_of(job.study_uid, ref.sop_instance_uid)
        if path is None:
            raise InferenceError(f"instance {ref.sop_instance_uid} is not in the ledger")
        try:
            return dcmread(path)
        except Exception as e:
            raise InferenceError(f"instance {ref.sop_instance_uid} cannot be read: {e}") from e

    def heartbeat(self, job: AnalysisJob) -> None:
        self._assignments.heartbeat(job.study_uid, job.generation)

    def store(self, job: AnalysisJob, outputs: list[Dataset]) -> None:
        for ds in outputs:
            self._assignments.store(job.study_uid, job.generation, to_bytes(ds))

    def finish(self, job: AnalysisJob, report: AnalysisReport) -> Finished:
        return self._assignments.finish(job.study_uid, job.generation, report)

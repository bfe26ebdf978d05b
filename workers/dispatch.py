"""The node's :class:`dicom_node.dispatch.Dispatcher`, implemented: a Celery queue, or the embedded worker."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery

from dermnode.kernel.messages import AnalysisJob

LOG = logging.getLogger("dermnode.dispatch")

ANALYSE_TASK = "dermnode.analyse_study"


class CeleryDispatcher:
    """Publishes jobs to the broker; separate ``dermnode worker`` processes execute them."""

    def __init__(self, app: Celery, queue_name: str) -> None:
        self._app = app
        self._queue = queue_name

    def submit(self, job: AnalysisJob) -> None:
        self._app.send_task(
            ANALYSE_TASK,
            kwargs={"message": job.to_message()},
            queue=self._queue,
            task_id=f"{job.study_uid}.g{job.generation}",
        )

    def close(self) -> None:
        self._app.close()


class InProcessDispatcher:
    """The embedded default: one background thread runs the same Celery task, no broker needed.

    Jobs held in memory are not lost on a crash: the ledger still says "queued", and the node
    re-queues such studies when it starts.
    """

    def __init__(self) -> None:
        self._run: Callable[[dict[str, Any]], Any] | None = None
        self._jobs: queue.Queue[AnalysisJob | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="dermnode-embedded-worker", daemon=True)

    def bind(self, run: Callable[[dict[str, Any]], Any]) -> None:
        """Set what runs a job (the Celery task, applied in-process, on the node's own link) and start."""
        self._run = run
        self._thread.start()

    def submit(self, job: AnalysisJob) -> None:
        self._jobs.put(job)

    def close(self) -> None:
        self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        assert self._run is not None
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._run(job.to_message())
            except Exception:
                LOG.exception("embedded analysis of study %s failed", job.study_uid)

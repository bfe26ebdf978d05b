"""The Celery application: built by one factory from :class:`Settings`, no module-level app.

One task, ``dermnode.analyse_study`` on the analysis queue: JSON only, ``acks_late``,
``reject_on_worker_lost``. A job names its node (URL and job token) when it was queued for workers on other
hosts; the embedded worker, in the node's process, runs the same task through a :class:`LocalLink`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from celery import Celery

from dermnode.kernel.errors import ConfigurationError
from dermnode.kernel.messages import AnalysisJob
from dermnode.kernel.settings import Settings
from workers.dispatch import ANALYSE_TASK
from workers.link import NodeLink
from workers.pipeline import AnalyzerFactory, StudyAnalysis
from workers.remote import HttpLink

LOG = logging.getLogger("dermnode.worker")


@dataclass(frozen=True)
class WorkerRuntime:
    """The app and the analysis its task runs (the embedded node needs both)."""

    app: Celery
    analysis: StudyAnalysis


def build_runtime(
    settings: Settings,
    *,
    embedded_link: NodeLink | None = None,
    analyzer_factory: AnalyzerFactory | None = None,
) -> WorkerRuntime:
    """Build the app; with ``embedded_link`` the task runs in this process on that link (memory transport)."""
    embedded = embedded_link is not None
    if not embedded and not settings.broker_url:
        raise ConfigurationError("a Celery worker needs broker_url: pass --broker redis://HOST:6379/0")
    app = Celery(
        "dermnode",
        broker="memory://" if embedded else settings.broker_url,
        backend=None if embedded else settings.result_backend,
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue_name,
        task_routes={ANALYSE_TASK: {"queue": settings.queue_name}},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        # A task whose worker died is handed to another worker after this long (Redis transport).
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        task_ignore_result=settings.result_backend is None,
    )
    analysis = StudyAnalysis(settings, analyzer_factory=analyzer_factory)
    remote = HttpLink(timeout_s=settings.network_timeout_s * 2)

    @app.task(name=ANALYSE_TASK, shared=False)  # shared tasks would bind every app to the first closure
    def analyse_study(message: dict[str, Any]) -> dict[str, Any]:
        """Analyse one complete study generation; the node records the outcome and delivers."""
        job = AnalysisJob.from_message(message)
        link: NodeLink
        if job.node is not None:
            link = remote
        elif embedded_link is not None:
            link = embedded_link
        else:
            LOG.error("study %s: the job names no node (queued by an older node?); dropped", job.study_uid)
            return {"study_uid": job.study_uid, "state": "dropped", "reason": "no node in the job"}
        return analysis.run(job, link).as_dict()

    return WorkerRuntime(app, analysis)


def create_app(settings: Settings) -> Celery:
    """The Celery app for ``dermnode worker`` and for the node's producer side."""
    return build_runtime(settings).app

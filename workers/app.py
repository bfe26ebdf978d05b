"""The Celery application: one factory, configured from :class:`Settings`, no module-level app."""

from __future__ import annotations

from typing import Any

from celery import Celery

from dicom_node.settings import Settings
from workers.dispatch import ANALYSE_TASK
from workers.jobs import AnalysisJob
from workers.pipeline import StudyAnalysis


def create_app(settings: Settings, analysis: StudyAnalysis | None = None) -> Celery:
    """A Celery app whose ``dermnode.analyse_study`` task runs :class:`StudyAnalysis`.

    Without ``broker_url`` the app uses the in-memory transport and is only driven in-process
    (the embedded default); with ``redis://…`` it talks to real workers.
    """
    app = Celery("dermnode", broker=settings.broker_url or "memory://", backend=settings.result_backend)
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
        task_ignore_result=settings.result_backend is None,
    )
    runner = analysis or StudyAnalysis(settings)

    @app.task(name=ANALYSE_TASK)
    def analyse_study(message: dict[str, Any]) -> dict[str, Any]:
        """Analyse one complete study generation and deliver its SR + SEG."""
        return runner.run(AnalysisJob.from_message(message)).as_dict()

    return app

"""The Celery application: built by one factory from :class:`Settings`, no module-level app.

Two tasks, each on its own queue: ``dermnode.analyse_study`` (models, GPU) and ``dermnode.deliver``
(network). JSON only, ``acks_late``, ``reject_on_worker_lost``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery

from dermnode.kernel.errors import ConfigurationError
from dermnode.kernel.messages import AnalysisJob, DeliveryJob
from dermnode.kernel.settings import Settings
from dicom_node.ledger import Ledger
from workers.delivery import (
    DELIVER_TASK,
    CeleryDeliveryScheduler,
    Delivery,
    DeliveryScheduler,
    InProcessDeliveryScheduler,
)
from workers.dispatch import ANALYSE_TASK
from workers.pipeline import AnalyzerFactory, StudyAnalysis


class LazyLedger:
    """Opens the ledger on first use, in the process that uses it (after a worker forks)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ledger: Ledger | None = None

    def __call__(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self._settings.ledger_path)
        return self._ledger


@dataclass(frozen=True)
class WorkerRuntime:
    """The app and the objects its tasks run on (the embedded node needs them too)."""

    app: Celery
    analysis: StudyAnalysis
    scheduler: DeliveryScheduler


def build_runtime(
    settings: Settings, *, embedded: bool = False, analyzer_factory: AnalyzerFactory | None = None
) -> WorkerRuntime:
    """Build the app; with ``embedded`` both tasks run in this process (memory transport, no broker)."""
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
        task_routes={ANALYSE_TASK: {"queue": settings.queue_name}, DELIVER_TASK: {"queue": settings.delivery_queue}},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        # A task whose worker died is handed to another worker after this long (Redis transport).
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        task_ignore_result=settings.result_backend is None,
    )
    ledger = LazyLedger(settings)
    in_process = InProcessDeliveryScheduler() if embedded else None
    scheduler: DeliveryScheduler = in_process or CeleryDeliveryScheduler(app, settings.delivery_queue)
    analysis = StudyAnalysis(settings, scheduler, ledger, analyzer_factory=analyzer_factory)
    delivery = Delivery(settings, ledger)

    @app.task(name=ANALYSE_TASK, shared=False)  # shared tasks would bind every app to the first closure
    def analyse_study(message: dict[str, Any]) -> dict[str, Any]:
        """Analyse one complete study generation and queue its deliveries."""
        return analysis.run(AnalysisJob.from_message(message)).as_dict()

    @app.task(name=DELIVER_TASK, shared=False)
    def deliver(message: dict[str, Any]) -> dict[str, Any]:
        """Send one generation's outputs to one destination once; re-queue with back-off on failure."""
        outcome = delivery.attempt(DeliveryJob.from_message(message))
        if outcome.retry_in_s is not None:
            scheduler.schedule(outcome.job.next_attempt(), outcome.retry_in_s)
        return outcome.as_dict()

    if in_process is not None:
        in_process.bind(lambda job: deliver.apply(kwargs={"message": job.to_message()}).get())
    return WorkerRuntime(app, analysis, scheduler)


def create_app(settings: Settings) -> Celery:
    """The Celery app for ``dermnode worker`` and for the node's producer side."""
    return build_runtime(settings).app

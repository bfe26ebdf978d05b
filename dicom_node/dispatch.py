"""What the node calls to hand over a complete study. The application layer (:mod:`workers.dispatch`)
implements it with a Celery queue or the embedded worker; the node never imports that layer."""

from __future__ import annotations

from typing import Protocol

from dermnode.kernel.messages import AnalysisJob


class Dispatcher(Protocol):
    """Takes complete studies from the node; must not block on the analysis itself."""

    def submit(self, job: AnalysisJob) -> None:
        """Queue ``job``; raise on failure (the node retries later: the ledger still says complete)."""

    def close(self) -> None:
        """Release connections or threads; called once when the node stops."""

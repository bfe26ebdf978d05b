"""Prometheus metrics of the node (``GET /metrics``), in a registry of their own.

Counters and histograms are fed by two observers: :meth:`Metrics.on_association` (the node's answer to each
association request) and :meth:`Metrics.on_event` (the ledger's event trail: stores, refusals, analyses,
deliveries, wherever they ran). Studies by state and queue depths are read from the ledger (and the broker)
at each scrape, so they are right after a restart too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dicom_node.ledger import DeliveryState, Event, Ledger, StudyState
from dicom_node.node import AssociationAttempt

#: Seconds: from one second to the 24 h a delivery may retry for.
_LONG_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, float("inf"))
_ANALYSIS_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, float("inf"))


def _detail(event: Event) -> dict[str, object]:
    try:
        value = json.loads(event.detail)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _LedgerGauges(Collector):
    """Studies by state and work waiting, read at scrape time."""

    def __init__(self, ledger: Ledger, broker_queues: Callable[[], Mapping[str, int]] | None) -> None:
        self._ledger = ledger
        self._broker_queues = broker_queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_state = self._ledger.count_studies_by_state()
        studies = GaugeMetricFamily("dermnode_studies", "Studies in the ledger by state", labels=["state"])
        for state in StudyState:
            studies.add_metric([state.value], by_state.get(state, 0))
        yield studies
        deliveries = self._ledger.count_deliveries_by_state()
        depth = GaugeMetricFamily("dermnode_queue_depth",
                                  "Work waiting: complete or queued studies (analysis), pending or retrying "
                                  "deliveries (delivery)", labels=["queue"])
        depth.add_metric(["analysis"], by_state.get(StudyState.COMPLETE, 0) + by_state.get(StudyState.QUEUED, 0))
        depth.add_metric(["delivery"], deliveries.get(DeliveryState.PENDING, 0)
                         + deliveries.get(DeliveryState.RETRYING, 0))
        yield depth
        if self._broker_queues is not None:
            broker = GaugeMetricFamily("dermnode_broker_queue_length", "Messages waiting in the broker",
                                       labels=["queue"])
            for name, length in self._broker_queues().items():
                broker.add_metric([name], length)
            yield broker


class Metrics:
    """The node's metrics; ``registry`` is what ``/metrics`` exposes."""

    def __init__(
        self,
        ledger: Ledger,
        model_versions: Mapping[str, str] | None = None,
        broker_queues: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self._ledger = ledger
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.instances_received = Counter("dermnode_instances_received", "Instances stored (C-STORE success)",
                                          registry=r)
        self.instances_refused = Counter("dermnode_instances_refused", "Instances refused, by C-STORE status",
                                         ["status"], registry=r)
        self.associations = Counter("dermnode_associations", "Association requests by result and reason",
                                    ["result", "reason"], registry=r)
        self.analysis_duration = Histogram("dermnode_analysis_duration_seconds", "Analysis of a study generation",
                                           buckets=_ANALYSIS_BUCKETS, registry=r)
        self.delivery_duration = Histogram("dermnode_delivery_duration_seconds",
                                           "From queueing a delivery to its final state, by destination",
                                           ["destination"], buckets=_LONG_BUCKETS, registry=r)
        self.delivery_attempts = Counter("dermnode_delivery_attempts", "Delivery attempts by destination",
                                         ["destination"], registry=r)
        self.delivery_failures = Counter("dermnode_delivery_failures",
                                         "Deliveries failed for good (retry period over), by destination",
                                         ["destination"], registry=r)
        self.latency = Histogram("dermnode_last_instance_to_delivered_seconds",
                                 "From a study's last instance received to its results delivered",
                                 buckets=_LONG_BUCKETS, registry=r)
        self.models = Info("dermnode_model", "Model bundles in use (name: version)", registry=r)
        self.models.info(dict(model_versions or {}))
        r.register(_LedgerGauges(ledger, broker_queues))
        self._analysing: dict[str, float] = {}
        self._delivering: dict[tuple[str, str], float] = {}

    def on_association(self, attempt: AssociationAttempt) -> None:
        if attempt.accepted:
            self.associations.labels("accepted", "").inc()
        else:
            reason = attempt.reason.name.lower() if attempt.reason is not None else "unknown"
            self.associations.labels("rejected", reason).inc()

    def on_event(self, event: Event) -> None:
        kind, detail = event.kind, _detail(event)
        if kind in ("instance-stored", "instance-replaced"):
            self.instances_received.inc()
        elif kind == "instance-rejected":
            reason = str(detail.get("reason", ""))
            if not reason.startswith("association rejected"):  # counted by on_association
                self.instances_refused.labels(reason[:6] if reason.startswith("0x") else "other").inc()
        elif kind == "study-analysing":
            self._analysing[event.study_uid] = event.at
        elif kind in ("study-delivering", "study-analysed", "study-failed") and event.study_uid in self._analysing:
            self.analysis_duration.observe(event.at - self._analysing.pop(event.study_uid))
        if kind == "study-delivered":
            study = self._ledger.study(event.study_uid)
            if study is not None:
                self.latency.observe(max(0.0, event.at - study.last_received))
        if kind.startswith("delivery-"):
            self._on_delivery(event, kind.removeprefix("delivery-"), str(detail.get("destination", "")))

    def _on_delivery(self, event: Event, state: str, destination: str) -> None:
        key = (event.study_uid, destination)
        if state == DeliveryState.PENDING:
            self._delivering.setdefault(key, event.at)
            return
        self.delivery_attempts.labels(destination).inc()
        if state in (DeliveryState.DELIVERED, DeliveryState.FAILED):
            if state == DeliveryState.FAILED:
                self.delivery_failures.labels(destination).inc()
            started = self._delivering.pop(key, None)
            if started is not None:
                self.delivery_duration.labels(destination).observe(max(0.0, event.at - started))

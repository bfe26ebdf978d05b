"""Metrics fed by the ledger's event trail: deliveries (attempts, failures, durations), analysis duration,
refusals by status, latency from the last instance to delivered; work waiting read at scrape time."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from dermnode.ops.metrics import Metrics
from dermnode.ops.trail import EventTrail
from dicom_node.ledger import DeliveryState, Ledger, ReceivedInstance, StudyState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_deliveries_and_durations_are_counted_from_the_trail(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger(tmp_path / "ledger.sqlite3", clock=clock)
    metrics = Metrics(ledger, {}, broker_queues=lambda: {"dermnode.analysis": 3})
    trail = EventTrail(ledger, [metrics.on_event])
    ledger.record_instance(ReceivedInstance("1.2.3.4", "1.2.3", "1.2.3.5", "1.2", "1.2.840.10008.1.2.1",
                                            tmp_path / "x.dcm", "STORESCU", "127.0.0.1"))
    ledger.record_rejection("1.2.3.9", "STORESCU", "0xA900: SOP Instance UID missing")
    ledger.transition("1.2.3", StudyState.ANALYSING)
    clock.now += 4.0
    ledger.transition("1.2.3", StudyState.DELIVERING)
    for dest in ("PACS@10.0.0.5:104", "ARCHIVE@10.0.0.6:104"):
        ledger.record_delivery("1.2.3", 1, dest, DeliveryState.PENDING, 0, "queued")
    clock.now += 2.0
    ledger.record_delivery("1.2.3", 1, "PACS@10.0.0.5:104", DeliveryState.RETRYING, 1, "no association")
    assert 'dermnode_queue_depth{queue="delivery"} 2.0' in generate_latest(metrics.registry).decode()
    clock.now += 10.0
    ledger.record_delivery("1.2.3", 1, "PACS@10.0.0.5:104", DeliveryState.DELIVERED, 2, "delivered")
    ledger.record_delivery("1.2.3", 1, "ARCHIVE@10.0.0.6:104", DeliveryState.FAILED, 1, "rejected")
    ledger.transition("1.2.3", StudyState.DELIVERED)
    assert trail.poll() > 0
    text = generate_latest(metrics.registry).decode()
    assert 'dermnode_delivery_attempts_total{destination="PACS@10.0.0.5:104"} 2.0' in text
    assert 'dermnode_delivery_failures_total{destination="ARCHIVE@10.0.0.6:104"} 1.0' in text
    assert 'dermnode_delivery_duration_seconds_sum{destination="PACS@10.0.0.5:104"} 12.0' in text
    assert "dermnode_analysis_duration_seconds_sum 4.0" in text
    assert "dermnode_last_instance_to_delivered_seconds_sum 16.0" in text
    assert 'dermnode_instances_refused_total{status="0xA900"} 1.0' in text
    assert 'dermnode_studies{state="delivered"} 1.0' in text
    assert 'dermnode_broker_queue_length{queue="dermnode.analysis"} 3.0' in text
    ledger.close()

"""Deliveries that outlast an outage: the retry period is kept in the ledger, across restarts; a failed study
can be resent. Real ledger, real pynetdicom SCU, a real DCMTK storescp coming back after the outage."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermnode.kernel.addresses import Address
from dermnode.kernel.errors import LedgerError, NotFoundError
from dermnode.kernel.messages import DeliveryJob
from dermnode.kernel.settings import Settings, load_settings
from dicom_node.delivery import Delivery
from dicom_node.ledger import DeliveryState, Ledger, ReceivedInstance, StudyState
from tests import dcmtk
from tests.factories import minimal_output_file


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _delivering_study(ledger: Ledger, tmp_path: Path) -> str:
    study_uid = "1.2.826.0.1.3680043.8.498.1"
    ledger.record_instance(ReceivedInstance("1.2.826.0.1.3680043.8.498.2", study_uid, "1.2.826.0.1.3680043.8.498.3",
                                            "1.2.840.10008.5.1.4.1.1.77.1.7", "1.2.840.10008.1.2.1",
                                            tmp_path / "x.dcm", "STORESCU", "127.0.0.1"))
    out = minimal_output_file(tmp_path / "outbox")
    ledger.record_output(study_uid, 1, out.stem, "sr", "1.2.840.10008.5.1.4.1.1.88.33", out)
    ledger.transition(study_uid, StudyState.DELIVERING)
    return study_uid


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(None, {}, {"data_dir": tmp_path / "data", "send_backoff_s": 2.0,
                                    "send_backoff_max_s": 600.0, "network_timeout_s": 5})


def test_retrying_outlasts_a_restart_then_fails_at_the_end_of_the_period_and_a_resend_delivers(
    tmp_path: Path, settings: Settings
) -> None:
    clock = Clock()
    ledger = Ledger(settings.ledger_path, clock=clock)
    study_uid = _delivering_study(ledger, tmp_path)
    port = dcmtk.free_port()
    dest = Address("PACS", "127.0.0.1", port)
    ledger.record_delivery(study_uid, 1, dest.describe(), DeliveryState.PENDING, 0, "queued")

    first = Delivery(settings, lambda: ledger, clock=clock).attempt(DeliveryJob(study_uid, 1, dest, attempt=1))
    assert first.state == DeliveryState.RETRYING and first.retry_in_s == 2.0
    ledger.close()

    # The node restarts 23 h into the outage: a new ledger connection, a new Delivery, the same period.
    clock.now += 23 * 3600
    ledger = Ledger(settings.ledger_path, clock=clock)
    ledger.record_delivery(study_uid, 1, dest.describe(), DeliveryState.PENDING, 0, "re-queued after restart")
    delivery = Delivery(settings, lambda: ledger, clock=clock)
    again = delivery.attempt(DeliveryJob(study_uid, 1, dest, attempt=1))
    assert again.state == DeliveryState.RETRYING
    clock.now += 3600 - 1
    last = delivery.attempt(DeliveryJob(study_uid, 1, dest, attempt=2))
    assert last.state == DeliveryState.FAILED and last.retry_in_s is None
    study = ledger.study(study_uid)
    assert study is not None and study.state == StudyState.FAILED and "no association" in study.reason

    with pytest.raises(NotFoundError, match="not in the ledger"):
        ledger.request_resend("1.2.3.4", "test")
    resent = ledger.request_resend(study_uid, "admin")
    assert resent.state == StudyState.COMPLETE and resent.generation == 1
    assert ledger.deliveries(study_uid) == []  # today's destinations decide; the events keep the failure
    assert [e.kind for e in ledger.events(study_uid)].count("delivery-failed") == 1
    with pytest.raises(LedgerError, match="not finished"):
        ledger.request_resend(study_uid, "admin")

    # The PACS is back: the resent study's run of attempts starts afresh and delivers.
    ledger.transition(study_uid, StudyState.DELIVERING)
    ledger.record_delivery(study_uid, 1, dest.describe(), DeliveryState.PENDING, 0, "queued")
    assert ledger.delivery_since(study_uid, 1, dest.describe()) == clock.now
    scp = dcmtk.StoreSCP(tmp_path / "pacs", ae_title="PACS")
    try:
        ok = delivery.attempt(DeliveryJob(study_uid, 1, Address("PACS", "127.0.0.1", scp.port), attempt=1))
        assert ok.state == DeliveryState.DELIVERED
    finally:
        scp.stop()
    ledger.close()

"""The analysis pipeline in one process: real models (shipped bundles), real ledger, real storescp."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node.ledger import Ledger, ReceivedInstance, StudyState
from dicom_node.sender import StoreSender
from dicom_node.settings import Settings, load_settings
from dicom_node.spool import Spool
from inference.predict import Analyzer
from tests import dcmtk
from tests.factories import write_study
from workers.jobs import Address, AnalysisJob
from workers.pipeline import StudyAnalysis


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.from_bundles(None, None, "cpu")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(None, {}, {"data_dir": tmp_path / "data", "send_attempts": 2, "send_backoff_s": 0})


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    ledger = Ledger(settings.ledger_path)
    yield ledger
    ledger.close()


def _spool_study(tmp_path: Path, settings: Settings, ledger: Ledger, n: int = 2) -> str:
    spool = Spool(settings.spool_dir)
    for path in write_study(tmp_path / "src", n_images=n):
        ds = dcmread(path)
        final = spool.write_bytes(path.read_bytes(), ds.StudyInstanceUID, ds.SOPInstanceUID)
        ledger.record_instance(ReceivedInstance(ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                                ds.SOPClassUID, str(ds.file_meta.TransferSyntaxUID), final,
                                                "STORESCU", "127.0.0.1"))
    study_uid = str(ds.StudyInstanceUID)
    ledger.transition(study_uid, StudyState.QUEUED)
    return study_uid


def _analysis(settings: Settings, ledger: Ledger, analyzer: Analyzer) -> StudyAnalysis:
    sender = StoreSender(settings.ae_title, attempts=2, backoff_s=0, timeout_s=5)
    return StudyAnalysis(settings, ledger=ledger, analyzer_factory=lambda: analyzer, sender=sender)


def test_outputs_are_written_recorded_and_deterministic(
    tmp_path: Path, settings: Settings, ledger: Ledger, analyzer: Analyzer
) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger)
    analysis = _analysis(settings, ledger, analyzer)
    first = analysis.run(AnalysisJob(study_uid, 1, ()))
    assert first.state == StudyState.DELIVERED, first.reason
    assert "no destination configured" in first.reason
    assert len(first.outputs) == 5 and all(Path(p).is_file() for p in first.outputs)
    assert {o["kind"] for o in ledger.outputs(study_uid)} == {"seg", "attention-seg", "sr"}
    # a redelivered task produces the very same objects (same UIDs), replacing rather than duplicating
    ledger.transition(study_uid, StudyState.QUEUED)
    again = analysis.run(AnalysisJob(study_uid, 1, ()))
    assert sorted(again.outputs) == sorted(first.outputs)


def test_unreachable_destination_fails_with_reason_after_bounded_retries(
    tmp_path: Path, settings: Settings, ledger: Ledger, analyzer: Analyzer
) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger, n=1)
    dead = Address("PACS", "127.0.0.1", dcmtk.free_port())
    outcome = _analysis(settings, ledger, analyzer).run(AnalysisJob(study_uid, 1, (dead,)))
    assert outcome.state == StudyState.FAILED
    study = ledger.study(study_uid)
    assert study is not None and study.state == StudyState.FAILED
    assert "PACS@127.0.0.1" in study.reason and "no association" in study.reason
    [delivery] = ledger.deliveries(study_uid)
    assert delivery["state"] == "failed" and delivery["attempts"] == 2


def test_stale_generation_is_skipped(tmp_path: Path, settings: Settings, ledger: Ledger, analyzer: Analyzer) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger, n=1)
    outcome = _analysis(settings, ledger, analyzer).run(AnalysisJob(study_uid, 7, ()))
    assert outcome.state == "skipped"
    assert ledger.study(study_uid).state == StudyState.QUEUED  # type: ignore[union-attr]


def test_corrupt_spooled_file_fails_the_study_with_the_reason(
    tmp_path: Path, settings: Settings, ledger: Ledger, analyzer: Analyzer
) -> None:
    study_uid = _spool_study(tmp_path, settings, ledger, n=1)
    [inst] = ledger.instances(study_uid)
    inst.path.write_bytes(inst.path.read_bytes()[:2000])  # disk corruption after acknowledgement
    outcome = _analysis(settings, ledger, analyzer).run(AnalysisJob(study_uid, 1, ()))
    assert outcome.state == StudyState.FAILED
    study = ledger.study(study_uid)
    assert study is not None and study.state == StudyState.FAILED and study.reason.startswith("analysis")

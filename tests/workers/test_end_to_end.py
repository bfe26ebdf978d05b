"""End to end with real processes: storescu → dermnode → (Redis → celery worker | embedded) → storescp.

Every object the destination receives is validated with dciodvfy and read back with highdicom.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydicom import dcmread

from dicom_node.ledger import Ledger, StudyState
from tests import dcmtk
from tests.e2e import (
    PER_IMAGE_OBJECTS,
    broker_args,
    check_outputs,
    expected_objects,
    serve_args,
    studies_listing,
)
from tests.factories import write_study
from tests.processes import DermnodeProcess

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/0"
def _redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (tests/run.sh starts it)")
    return client


@pytest.fixture
def queue_name() -> Iterator[str]:
    name = f"dermnode-test-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(name, f"{name}\x06\x163", f"{name}\x06\x166", f"{name}\x06\x169")


def test_embedded_default_delivers_sr_and_seg(tmp_path: Path, destination: dcmtk.StoreSCP) -> None:
    data_dir = tmp_path / "node"
    node = DermnodeProcess(serve_args(data_dir, destination))
    try:
        port = node.wait_listening()
        files = write_study(tmp_path / "study", n_images=2)
        study_uid = str(dcmread(files[0]).StudyInstanceUID)
        sent = dcmtk.storescu(port, files)
        assert sent.returncode == 0, sent.stderr
        received = destination.wait_for(expected_objects(2), timeout=120)
        check_outputs(received, 2, study_uid)
        node.wait_for_log(r"delivered \d+ object\(s\) to DEST")
    finally:
        node.stop()
    assert "delivered" in studies_listing(data_dir)


def test_redis_and_celery_worker_deliver_sr_and_seg(
    tmp_path: Path, destination: dcmtk.StoreSCP, queue_name: str
) -> None:
    _redis_or_skip()
    data_dir = tmp_path / "node"
    env = {"DERMNODE_QUEUE": queue_name}
    worker = DermnodeProcess(["worker", "--broker", REDIS_URL, "--hostname", f"{queue_name}@%h"], env=env)
    node = DermnodeProcess(serve_args(data_dir, destination, *broker_args(REDIS_URL)), env=env)
    try:
        port = node.wait_listening()
        worker.wait_for_log(r"ready\.", timeout=120)
        files = write_study(tmp_path / "study", n_images=2)
        study_uid = str(dcmread(files[0]).StudyInstanceUID)
        assert dcmtk.storescu(port, files).returncode == 0
        received = destination.wait_for(expected_objects(2), timeout=120)
        check_outputs(received, 2, study_uid)
        worker.wait_for_log(r"2 image\(s\) analysed")
        node.wait_for_log(r"delivered \d+ object\(s\) to DEST")
        assert "analysed" not in node.logs()  # the node itself never analysed: the worker did
    finally:
        node.stop()
        worker.stop()
    assert "delivered" in studies_listing(data_dir)


def test_restart_delivers_a_complete_undelivered_study(
    tmp_path: Path, destination: dcmtk.StoreSCP, queue_name: str
) -> None:
    """The node queues a study to a broker with no worker, crashes; restarted, it delivers the study."""
    _redis_or_skip()
    data_dir = tmp_path / "node"
    first = DermnodeProcess(serve_args(data_dir, destination, *broker_args(REDIS_URL)),
                            env={"DERMNODE_QUEUE": queue_name})
    try:
        port = first.wait_listening()
        files = write_study(tmp_path / "study", n_images=1)
        assert dcmtk.storescu(port, files).returncode == 0
        first.wait_for_log(r"queued for DEST", timeout=60)
    finally:
        first.kill()
    assert "queued" in studies_listing(data_dir)
    assert destination.files() == []
    second = DermnodeProcess(serve_args(data_dir, destination))  # embedded, same data directory
    try:
        second.wait_listening()
        received = destination.wait_for(expected_objects(1), timeout=120)
        check_outputs(received, 1, str(dcmread(files[0]).StudyInstanceUID))
        second.wait_for_log(r"re-queued|will be queued again")
    finally:
        second.stop()
    assert "delivered" in studies_listing(data_dir)


def test_late_instance_triggers_reanalysis_with_a_new_report_version(
    tmp_path: Path, destination: dcmtk.StoreSCP
) -> None:
    """A late image re-opens the study: unchanged images keep their SEG UIDs, the SR is a new version."""
    data_dir = tmp_path / "node"
    node = DermnodeProcess(serve_args(data_dir, destination))
    try:
        port = node.wait_listening()
        study_uid = f"2.25.{uuid.uuid4().int}"
        first = write_study(tmp_path / "a", n_images=1, study_uid=study_uid)
        assert dcmtk.storescu(port, first).returncode == 0
        before = {dcmread(f).SOPInstanceUID: dcmread(f) for f in destination.wait_for(expected_objects(1))}
        late = write_study(tmp_path / "b", n_images=1, study_uid=study_uid)
        assert dcmtk.storescu(port, late).returncode == 0
        after_files = destination.wait_for(len(before) + expected_objects(2) - PER_IMAGE_OBJECTS, timeout=120)
        node.wait_for_log(r"study \S+ generation 2 queued")
        node.wait_for_log(rf"delivered {expected_objects(2)} object\(s\)")
    finally:
        node.stop()
    after = {dcmread(f).SOPInstanceUID: dcmread(f) for f in after_files}
    old_sr = next(d for d in before.values() if d.Modality == "SR")
    new_srs = [d for uid, d in after.items() if d.Modality == "SR" and uid != old_sr.SOPInstanceUID]
    assert len(new_srs) == 1, "the re-analysis must produce a new SR version"
    new_sr = new_srs[0]
    assert new_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0] \
        .ReferencedSOPInstanceUID == old_sr.SOPInstanceUID
    assert new_sr.SeriesInstanceUID == old_sr.SeriesInstanceUID
    old_segs = {uid for uid, d in before.items() if d.Modality == "SEG"}
    assert old_segs <= set(after), "the unchanged image's SEG objects keep their UIDs (replaced, not duplicated)"
    assert "delivered" in studies_listing(data_dir)


def test_broker_outage_keeps_the_study_and_queues_it_when_redis_returns(
    tmp_path: Path, destination: dcmtk.StoreSCP, queue_name: str
) -> None:
    """Redis is down when the study completes: it stays complete in the ledger and goes out once Redis is up."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server is not installed")
    port = dcmtk.free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    data_dir = tmp_path / "node"
    env = {"DERMNODE_QUEUE": queue_name}
    node = DermnodeProcess(serve_args(data_dir, destination, *broker_args(broker)), env=env)
    server: subprocess.Popen[bytes] | None = None
    worker: DermnodeProcess | None = None
    try:
        files = write_study(tmp_path / "study", n_images=1)
        assert dcmtk.storescu(node.wait_listening(), files).returncode == 0  # acknowledged while Redis is down
        node.wait_for_log(r"could not be queued \(retry in", timeout=60)
        assert "complete" in studies_listing(data_dir)
        server = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no"], stdout=subprocess.DEVNULL)
        worker = DermnodeProcess(["worker", "--broker", broker], env=env)
        received = destination.wait_for(expected_objects(1), timeout=150)
        check_outputs(received, 1, str(dcmread(files[0]).StudyInstanceUID))
    finally:
        node.stop()
        if worker is not None:
            worker.stop()
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    assert "delivered" in studies_listing(data_dir)


def test_parallel_senders_lose_nothing(tmp_path: Path, destination: dcmtk.StoreSCP) -> None:
    """Bounded load: 4 studies of 3 images from 4 concurrent storescu; every study delivered once, complete."""
    from concurrent.futures import ThreadPoolExecutor

    data_dir = tmp_path / "node"
    node = DermnodeProcess(serve_args(data_dir, destination))
    try:
        port = node.wait_listening()
        studies = [write_study(tmp_path / f"study{i}", n_images=3) for i in range(4)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda files: dcmtk.storescu(port, files), studies))
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        received = destination.wait_for(4 * expected_objects(3), timeout=240)
    finally:
        node.stop()
    by_study: dict[str, list[Path]] = {}
    for f in received:
        by_study.setdefault(str(dcmread(f, stop_before_pixels=True).StudyInstanceUID), []).append(f)
    assert sorted(by_study) == sorted(str(dcmread(s[0]).StudyInstanceUID) for s in studies)
    for study_uid, files in by_study.items():
        check_outputs(files, 3, study_uid)
    listing = studies_listing(data_dir)
    assert listing.count("delivered") == 4 and "n=3" in listing


def test_a_study_whose_worker_is_killed_mid_analysis_is_analysed_again(
    tmp_path: Path, destination: dcmtk.StoreSCP, queue_name: str
) -> None:
    """kill -9 of the Celery worker while it analyses: the node sees no progress for stalled_after_s
    (here 20 s via DERMNODE_STALLED_AFTER_S) and queues the study again; a second worker delivers it."""
    _redis_or_skip()
    data_dir = tmp_path / "node"
    env = {"DERMNODE_QUEUE": queue_name, "DERMNODE_STALLED_AFTER_S": "20"}
    worker_args = ["worker", "--broker", REDIS_URL, "--hostname", f"{queue_name}@%h"]
    node = DermnodeProcess(serve_args(data_dir, destination, *broker_args(REDIS_URL)), env=env)
    first = DermnodeProcess(worker_args, env=env)
    second: DermnodeProcess | None = None
    try:
        port = node.wait_listening()
        first.wait_for_log(r"ready\.", timeout=120)
        files = write_study(tmp_path / "study", n_images=24)
        study_uid = str(dcmread(files[0]).StudyInstanceUID)
        assert dcmtk.storescu(port, files).returncode == 0
        ledger = Ledger(data_dir / "ledger.sqlite3")
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                study = ledger.study(study_uid)
                if study is not None and study.state == StudyState.ANALYSING:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the worker never started analysing")
            first.kill()  # mid-analysis
            assert ledger.study(study_uid).state == StudyState.ANALYSING  # type: ignore[union-attr]
        finally:
            ledger.close()
        second = DermnodeProcess(worker_args, env=env)
        received = destination.wait_for(expected_objects(24), timeout=240)
        check_outputs(received, 24, study_uid)
        node.wait_for_log(r"stalled while analysing")
    finally:
        node.stop()
        first.kill()
        if second is not None:
            second.stop()
    assert "delivered" in studies_listing(data_dir)

"""Workers on "other hosts": two ``dermnode worker`` processes that cannot see the node's data directory.

Each worker runs in its own mount namespace with an empty tmpfs over the node's data directory
(:func:`tests.processes.without_paths`), so everything it reads and writes goes over the network: the broker
(real Redis) for jobs, the node's worker API for images and results. A worker is killed with SIGKILL in the
middle of the batch; every study is still delivered, each object exactly once.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydicom import dcmread

from tests import dcmtk
from tests.e2e import broker_args, check_outputs, expected_objects, serve_args, studies_listing
from tests.factories import write_study
from tests.processes import DermnodeProcess, can_hide_paths, without_paths

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def queue_name() -> Iterator[str]:
    name = f"dermnode-test-{uuid.uuid4().hex[:8]}"
    yield name
    redis.Redis.from_url(REDIS_URL).delete(name)


@pytest.fixture
def hidden(tmp_path: Path) -> None:
    if shutil.which("unshare") is None or not can_hide_paths(tmp_path):
        pytest.skip("this machine does not allow mount namespaces (unshare --mount needs root)")


def _by_study(files: list[Path]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for f in files:
        out.setdefault(str(dcmread(f, stop_before_pixels=True).StudyInstanceUID), []).append(f)
    return out


def _mid_task(worker: DermnodeProcess) -> bool:
    """The worker has taken a job it has not finished (its results are not yet stored on the node)."""
    logs = worker.logs()
    return len(re.findall(r"Task dermnode.analyse_study\[\S+\] received", logs)) > len(
        re.findall(r"object\(s\) stored on the node", logs))


@pytest.fixture
def counting_destination(tmp_path: Path) -> Iterator[dcmtk.StoreSCP]:
    """A storescp that keeps every copy it receives, so that a duplicate delivery shows."""
    scp = dcmtk.StoreSCP(tmp_path / "received", unique_files=True)
    yield scp
    scp.stop()


def test_two_workers_without_the_data_directory_deliver_every_study_once_despite_a_kill(
    tmp_path: Path, counting_destination: dcmtk.StoreSCP, queue_name: str, hidden: None
) -> None:
    redis.Redis.from_url(REDIS_URL).ping()
    destination = counting_destination
    data_dir = tmp_path / "node"
    data_dir.mkdir(mode=0o700)
    # A killed worker's study: the node sees no heartbeat for 10 s and queues it again.
    env = {"DERMNODE_QUEUE": queue_name, "DERMNODE_STALLED_AFTER_S": "10"}
    node = DermnodeProcess(serve_args(data_dir, destination, *broker_args(REDIS_URL)), env=env)
    workers = [
        DermnodeProcess(["worker", "--broker", REDIS_URL, "--hostname", f"w{i}-{queue_name}@%h"], env=env,
                        prefix=without_paths(data_dir))
        for i in range(2)
    ]
    n_studies = 8
    try:
        port = node.wait_listening()
        for worker in workers:
            worker.wait_for_log(r"ready\.", timeout=120)
        studies = [write_study(tmp_path / f"study{i}", n_images=1) for i in range(n_studies)]
        for files in studies:
            assert dcmtk.storescu(port, files).returncode == 0
        victim = workers[0]
        deadline = time.monotonic() + 120
        while not _mid_task(victim):
            assert time.monotonic() < deadline, f"the first worker never took a job:\n{victim.logs()}"
            time.sleep(0.02)
        victim.kill()  # SIGKILL in the middle of a job, others still queued
        received = destination.wait_for(n_studies * expected_objects(1), timeout=240)
        node.wait_for_log(r"stalled while (queued|analysing)")  # the killed worker's study, queued again
        time.sleep(3)  # anything delivered twice would arrive now
        received = destination.files()
    finally:
        node.stop()
        for worker in workers:
            worker.stop()
    for worker in workers:
        assert str(data_dir) not in worker.logs()
    sop_uids = Counter(str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in received)
    assert all(count == 1 for count in sop_uids.values()), "an object was delivered twice"
    by_study = _by_study(received)
    assert sorted(by_study) == sorted(str(dcmread(s[0]).StudyInstanceUID) for s in studies)
    for study_uid, files in by_study.items():
        check_outputs(files, 1, study_uid)
    assert studies_listing(data_dir).count("delivered") == n_studies
    assert "image(s) analysed" in workers[1].logs()  # the survivor worked too


def test_a_broker_restart_that_loses_queued_jobs_loses_no_study(
    tmp_path: Path, destination: dcmtk.StoreSCP, queue_name: str, hidden: None
) -> None:
    """Redis without persistence restarts while a study waits in its queue: the job is gone, the ledger
    still says "queued"; the node queues it again after ``stalled_after_s`` and a worker delivers it once."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server is not installed")
    port = dcmtk.free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    command = [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    data_dir = tmp_path / "node"
    env = {"DERMNODE_QUEUE": queue_name, "DERMNODE_STALLED_AFTER_S": "10"}
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    node = DermnodeProcess(serve_args(data_dir, destination, *broker_args(broker)), env=env)
    worker: DermnodeProcess | None = None
    try:
        files = write_study(tmp_path / "study", n_images=1)
        assert dcmtk.storescu(node.wait_listening(), files).returncode == 0
        node.wait_for_log(r"queued for DEST", timeout=60)  # in Redis, and no worker yet
        server.terminate()
        server.wait(timeout=30)
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # empty: the job is lost
        worker = DermnodeProcess(["worker", "--broker", broker], env=env, prefix=without_paths(data_dir))
        received = destination.wait_for(expected_objects(1), timeout=150)
        check_outputs(received, 1, str(dcmread(files[0]).StudyInstanceUID))
        node.wait_for_log(r"stalled while queued")
        time.sleep(2)
        assert len(destination.files()) == expected_objects(1)
    finally:
        node.stop()
        if worker is not None:
            worker.stop()
        server.terminate()
        server.wait(timeout=30)
    assert "delivered" in studies_listing(data_dir)

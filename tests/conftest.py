"""Shared fixtures: settings on ephemeral ports, an in-process node with a recording dispatcher."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import config as pydicom_config

from dermnode.kernel.messages import AnalysisJob
from dermnode.kernel.settings import Settings, load_settings
from dicom_node.node import Node
from tests import dcmtk

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dermoscopy"


def pytest_configure(config: pytest.Config) -> None:
    """Strict pydicom for the whole run (as highdicom's own suite): an invalid value read or written by our
    code or our fixtures fails the test instead of warning. Node subprocesses keep pydicom's defaults."""
    del config
    pydicom_config.settings.reading_validation_mode = pydicom_config.RAISE
    pydicom_config.settings.writing_validation_mode = pydicom_config.RAISE


class RecordingDispatcher:
    """Stands at the queue boundary: records the jobs the node submits and signals each one."""

    def __init__(self) -> None:
        self.jobs: list[AnalysisJob] = []
        self.submitted = threading.Event()
        self.closed = False

    def submit(self, job: AnalysisJob) -> None:
        self.jobs.append(job)
        self.submitted.set()

    def close(self) -> None:
        self.closed = True


def node_settings(tmp_path: Path, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "bind_address": "127.0.0.1",
        "port": 0,
        "data_dir": tmp_path / "data",
        "allowed_peers": ["STORESCU", "PYSCU"],
        "completion.quiet_period_s": 0.5,
    }
    base.update(overrides)
    return load_settings(None, {}, base)


@pytest.fixture
def destination(tmp_path: Path) -> Iterator[dcmtk.StoreSCP]:
    """A DCMTK storescp on an ephemeral port: the PACS that receives SR + SEG."""
    scp = dcmtk.StoreSCP(tmp_path / "received")
    yield scp
    scp.stop()


@pytest.fixture
def recording() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def node(tmp_path: Path, recording: RecordingDispatcher) -> Iterator[Node]:
    n = Node(node_settings(tmp_path), recording)
    n.start()
    try:
        yield n
    finally:
        n.stop()

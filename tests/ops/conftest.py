"""A running node with its HTTP side on ephemeral ports, as ``dermnode serve --http-port 0`` wires it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dermnode.ops.metrics import Metrics
from dermnode.ops.server import HttpServer
from dermnode.ops.trail import EventTrail
from dermnode.ops.web import Console, build_app
from dicom_node.node import Node
from tests.conftest import RecordingDispatcher, node_settings

TOKEN = "not-a-real-secret-7f3a"


@dataclass
class Running:
    node: Node
    console: Console
    trail: EventTrail
    http: HttpServer
    base: str

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    node = Node(node_settings(tmp_path, admin_token=TOKEN, http_port=0), RecordingDispatcher())
    metrics = Metrics(node.ledger, {"dermnode-classifier": "1.1.0"})
    node.association_listeners.append(metrics.on_association)
    trail = EventTrail(node.ledger, [metrics.on_event])
    console = Console(node, metrics)
    node.start()
    http = HttpServer(build_app(console), "127.0.0.1", 0).start()
    try:
        yield Running(node, console, trail, http, f"http://127.0.0.1:{http.port}")
    finally:
        http.stop()
        node.stop()

"""The packaging around the node: the image's HEALTHCHECK command against a real node's /healthz, one CPU image
for the node and the worker in compose, and the systemd unit (reload = SIGHUP, stop = SIGTERM drain)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.ops.conftest import Running

REPO = Path(__file__).resolve().parents[2]


def test_the_image_healthcheck_passes_against_a_running_node(running: Running) -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    match = re.search(r'HEALTHCHECK .*?\\\n\s+CMD (\[.*\])', dockerfile)
    assert match is not None
    command = json.loads(match.group(1))
    env = {**os.environ, "DERMNODE_HTTP_PORT": str(running.http.port)}
    assert subprocess.run([sys.executable, *command[1:]], env=env, timeout=60).returncode == 0
    running.node.configured = running.node.configured.model_copy(update={"spool_min_free_mb": 1e12})
    running.node.refresh()
    failing = subprocess.run([sys.executable, *command[1:]], env=env, timeout=60, capture_output=True, text=True)
    assert failing.returncode != 0 and "503" in failing.stderr


def test_compose_builds_one_cpu_image_for_node_and_worker() -> None:
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert services["node"]["image"] == services["worker"]["image"] == "dermnode:cpu"
    assert "build" in services["node"] and "build" not in services["worker"]
    assert services["gpu-worker"]["image"] == "dermnode:cuda" and services["gpu-worker"]["profiles"] == ["gpu"]
    assert "127.0.0.1:8080:8080" in services["node"]["ports"]


def test_systemd_unit_reloads_with_sighup_and_drains_on_stop() -> None:
    unit = (REPO / "config" / "dermnode.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit and "KillSignal=SIGTERM" in unit
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(["systemd-analyze", "verify", str(REPO / "config" / "dermnode.service")],
                            capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line.strip() and "is not executable" not in line]  # /opt/dermnode is not installed here
    assert problems == []

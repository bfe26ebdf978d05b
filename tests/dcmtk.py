"""Run DCMTK's tools as an outside PACS would: storescu/echoscu as senders, storescp as destination."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

BIN = Path("/usr/bin")


def tool(name: str) -> str:
    """Absolute path of a DCMTK tool (a venv's pynetdicom apps must not shadow it), or skip."""
    path = BIN / name
    if not path.exists():
        found = shutil.which(name, path="/usr/local/bin:/usr/bin")
        if not found:
            pytest.skip(f"DCMTK {name} is not installed (apt-get install dcmtk)")
        return found
    return str(path)


def env() -> dict[str, str]:
    """Environment for DCMTK tools: Nagle off (DESIGN.md: ~40 ms per message on loopback otherwise)."""
    return {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(args: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env(), check=False)


def echoscu(port: int, called: str = "DERMNODE", calling: str = "STORESCU") -> subprocess.CompletedProcess[str]:
    return run([tool("echoscu"), "-aet", calling, "-aec", called, "127.0.0.1", str(port)])


def storescu(
    port: int, files: Sequence[Path], called: str = "DERMNODE", calling: str = "STORESCU", extra: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Send files as DCMTK would; -R proposes only the files' SOP classes (dermoscopy included)."""
    return run([tool("storescu"), "-R", "-xy", *extra, "-aet", calling, "-aec", called,
                "127.0.0.1", str(port), *map(str, files)])


class StoreSCP:
    """A DCMTK storescp destination on an ephemeral port, writing into ``directory``."""

    def __init__(self, directory: Path, ae_title: str = "DEST", unique_files: bool = False) -> None:
        """``unique_files``: one file per object received (a second copy of an object is a second file)."""
        self.directory = directory
        self.ae_title = ae_title
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        # +xa: accept all transfer syntaxes (DESIGN.md); -up: ignore unknown SOP classes restrictions.
        self.proc = subprocess.Popen(
            [tool("storescp"), "--aetitle", ae_title, "+xa", "-od", str(directory), "+uf" if unique_files else "-uf",
             str(self.port)],
            env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if echoscu(self.port, called=ae_title, calling="PROBE").returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("storescp did not start within 10 s")

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file())

    def wait_for(self, count: int, timeout: float = 60) -> list[Path]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = self.files()
            if len(files) >= count:
                time.sleep(0.3)  # storescp writes then renames nothing: give the last file a moment
                return self.files()
            time.sleep(0.1)
        raise AssertionError(f"storescp received {len(self.files())} file(s), expected {count} in {timeout} s")

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""

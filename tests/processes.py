"""Real dermnode processes (``dermnode serve`` / ``dermnode worker``) for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

_LISTENING = re.compile(r"listening on [^:]+:(\d+)")


class DermnodeProcess:
    """``python -m dermnode.cli ARGS`` with its output captured to a file for failure reports."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None, prefix: Sequence[str] = ()) -> None:
        """``prefix`` runs the command through another, e.g. :func:`without_paths`."""
        self.log = Path(tempfile.mkstemp(prefix="dermnode-", suffix=".log")[1])
        self._out = open(self.log, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "dermnode.cli", *args],
            stdout=subprocess.PIPE, stderr=self._out, text=True,
            env={**os.environ, "TCP_NODELAY": "1", **(env or {})},
        )
        self.port: int | None = None
        self._stdout: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._stdout.append(line)
            m = _LISTENING.search(line)
            if m:
                self.port = int(m.group(1))
                self._ready.set()

    def wait_listening(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready.wait(0.2):
                assert self.port is not None
                return self.port
            if self.proc.poll() is not None:
                break
        raise AssertionError(f"dermnode did not start listening; its log:\n{self.logs()}")

    def logs(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return "".join(self._stdout) + self.log.read_text()

    def wait_for_log(self, pattern: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.logs()):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} never appeared in the log:\n{self.logs()}")

    def kill(self) -> None:
        """SIGKILL: the crash case, nothing gets to clean up."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._out.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if not self._out.closed:
            self._out.close()
        return int(self.proc.returncode)


def without_paths(*hidden: Path) -> list[str]:
    """A command prefix that runs a process in its own mount namespace with an empty tmpfs over each of
    ``hidden``: the process cannot see what the node keeps there (a worker on another host, without a VM).
    Needs root (or user namespaces); :func:`can_hide_paths` says whether this machine allows it."""
    mounts = " && ".join(f'mount -t tmpfs -o size=1m,mode=0700 dermnode-hidden "${i + 1}"' for i in range(len(hidden)))
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'{mounts} && shift {len(hidden)} && exec "$@"', "sh", *(str(p) for p in hidden)]


def can_hide_paths(tmp: Path) -> bool:
    probe = tmp / "probe"
    probe.mkdir(exist_ok=True)
    (probe / "seen").write_text("x")
    done = subprocess.run([*without_paths(probe), "test", "!", "-e", str(probe / "seen")], capture_output=True)
    return done.returncode == 0

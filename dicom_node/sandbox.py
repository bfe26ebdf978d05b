"""The decode sandbox: compressed pixel data is decoded at intake in supervised child processes.

A JPEG, JPEG-LS or JPEG 2000 stream within the pixel limit can still take arbitrarily long to decode,
or hit a bug in a C decoder that crashes the process running it. Intake therefore decodes in a small
pool of long-lived decoder processes (:mod:`dicom_node.decoder`), never in the node: each decode has
a wall-clock limit and an address-space limit (``RLIMIT_AS``). A decoder that runs past its time is
killed and replaced; one that dies is replaced; the node refuses the instance and keeps serving.

Decoder processes are fresh interpreters running ``dicom_node/decoder.py`` (fork + exec by
:mod:`subprocess`, like the spawn start method), never a fork of the multithreaded node;
:mod:`multiprocessing`'s spawn and forkserver contexts are not used because they re-run the node's
``__main__`` module (the CLI and all it imports) in each child.
A decoder receives the path of the received file, not its bytes, and answers in JSON only the
decoded shape or the exception's type name (whose text may quote a value such as a patient ID).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from dermnode.kernel.errors import DermnodeError
from dicom_node import decoder as decoder_process
from dicom_node.decoder import MAX_MESSAGE_BYTES, Decoded, Job, ProtocolError

LOG = logging.getLogger("dermnode.node")

#: Seconds a new decoder process may take to import pydicom and the decoders and say it is ready.
START_TIMEOUT_S = 60.0
#: Seconds a stopping decoder process gets to exit before it is killed.
STOP_TIMEOUT_S = 2.0
#: How a decoder process is started: the node's interpreter runs the decoder module as a script (it
#: imports nothing of dermnode); ``-P`` keeps the script's folder off ``sys.path``.
DECODER_COMMAND = (sys.executable, "-P", str(Path(decoder_process.__file__).resolve()))


class SandboxError(DermnodeError):
    """A decode gave no answer about the pixel data."""


class DecodeTimeout(SandboxError):
    """The decoder ran past its time limit; it was killed and replaced."""


class DecoderDied(SandboxError):
    """The decoder process died while decoding (a crash, or killed by a signal or a limit), or broke
    the protocol; it was replaced."""


class SandboxUnavailable(SandboxError):
    """No decoder process can be had: the sandbox is stopped, or a new decoder process failed to start.

    Not the instance's fault: the node answers "out of resources" and the sender may try again.
    """


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class _Decoder:
    """One decoder process and the node's end of its socket; ``ready`` once it said so, ``decoding``
    while it has a job in hand."""

    process: subprocess.Popen[bytes]
    conn: Connection
    ready: bool = False
    decoding: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


class DecodeSandbox:
    """A pool of ``workers`` decoder processes; :meth:`start` it with the node, :meth:`stop` it with the node.

    :meth:`decode` is called from the association threads: each call takes an idle decoder (waiting
    while all are busy) and gives it back, or a fresh one in its place, when it is done. Decoder
    processes start in the background; the first decode on each waits until it is ready (at most
    ``start_timeout_s``, not counted against the decode's time limit).
    """

    def __init__(self, workers: int = 2, start_timeout_s: float = START_TIMEOUT_S) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self.start_timeout_s = start_timeout_s
        self._lock = threading.Condition()
        self._idle: list[_Decoder] = []
        self._busy: dict[int, _Decoder] = {}
        self._missing = 0  # pool places without a process (not needed yet, or failed to start): started on demand
        self._running = False

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> DecodeSandbox:
        """Start one decoder process (without waiting for it to be ready); the others of the pool are
        started when decodes overlap, so a node that decodes one instance at a time runs one."""
        with self._lock:
            if self._running:
                raise RuntimeError("the decode sandbox is already started")
            self._running = True
            self._missing = self.workers - 1
        self._replace_lost()
        LOG.info("decode sandbox: up to %d decoder process(es), started: %s", self.workers,
                 ", ".join(f"pid {pid}" for pid in self.pids) or "none")
        return self

    def stop(self) -> None:
        """Stop every decoder process; a decode in progress ends with :class:`SandboxUnavailable`."""
        with self._lock:
            self._running = False
            idle, busy = self._idle, list(self._busy.values())
            self._idle = []
            self._missing = 0
            self._lock.notify_all()
        for decoder in idle:
            decoder.conn.close()  # EOF: a ready decoder exits
        for decoder in idle:
            self._end(decoder, STOP_TIMEOUT_S if decoder.ready else 0.0)
        for decoder in busy:  # the thread that holds it sees it die, and ends it
            with contextlib.suppress(OSError):
                decoder.process.kill()

    def __enter__(self) -> DecodeSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        """Process ids of the decoder processes, idle and busy."""
        with self._lock:
            return sorted([d.pid for d in self._idle] + list(self._busy))

    @property
    def decoding_pids(self) -> list[int]:
        """Process ids of the decoder processes that have been handed a job and not answered yet."""
        with self._lock:
            return sorted(pid for pid, decoder in self._busy.items() if decoder.decoding)

    # --- decoding ------------------------------------------------------------------------------

    def decode(self, path: Path, timeout_s: float, address_space: int, label: str = "") -> Decoded:
        """Decode the frame of the Part 10 file at ``path`` in a decoder process.

        At most ``timeout_s`` seconds from handing it over, with ``address_space`` bytes of address
        space. ``label`` (a SOP Instance UID) names the instance in log lines. Raises
        :class:`DecodeTimeout`, :class:`DecoderDied` or :class:`SandboxUnavailable`; a decoding error
        is an answer (:attr:`Decoded.error`), not a raise.
        """
        job = Job(str(path), address_space, timeout_s).encode()
        decoder = self._acquire()
        try:
            decoder.conn.send_bytes(job)
        except OSError:  # it died while idle, not this instance's fault: a fresh one takes the job
            LOG.warning("decode sandbox: idle decoder process %d %s; replaced", decoder.pid,
                        _describe_exit(self._end(decoder, 0.0)))
            decoder = self._fresh()
            try:
                decoder.conn.send_bytes(job)
            except OSError as e:
                self._end(decoder, 0.0)
                self._missing_one()
                raise SandboxUnavailable(f"a new decoder process does not take work ({e})") from e
        with self._lock:
            decoder.decoding = True
        started = time.monotonic()
        try:
            answered = decoder.conn.poll(timeout_s)
        except OSError:
            answered = True  # a broken socket: the read below says how
        if not answered:
            self._end(decoder, 0.0)
            LOG.warning("decode sandbox: decoder process %d ran past %g s on instance %s: killed",
                        decoder.pid, timeout_s, label)
            self._replace_lost()
            raise DecodeTimeout(f"decoding took longer than {timeout_s:g} s (max_decode_s)")
        try:
            answer = Decoded.decode(decoder.conn.recv_bytes(MAX_MESSAGE_BYTES))
        except (EOFError, OSError, ProtocolError) as e:
            if isinstance(e, ProtocolError):
                self._end(decoder, 0.0)
                how = f"broke the protocol ({e})"
            else:
                how = _describe_exit(self._end(decoder, STOP_TIMEOUT_S))
            with self._lock:
                stopping = not self._running
            if stopping:  # stop() ended it: not the instance's fault
                raise SandboxUnavailable("the decode sandbox stopped during the decode") from None
            LOG.warning("decode sandbox: decoder process %d %s after %.2f s on instance %s",
                        decoder.pid, how, time.monotonic() - started, label)
            self._replace_lost()
            raise DecoderDied(f"the decoder process {how} while decoding") from None
        self._release(decoder)
        return answer

    # --- the pool ------------------------------------------------------------------------------

    def _spawn(self) -> _Decoder:
        """Start one decoder process; :meth:`_wait_ready` waits for it."""
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [*DECODER_COMMAND, "--fd", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            )
        except OSError as e:
            ours.close()
            raise SandboxUnavailable(f"a decoder process cannot be started ({e})") from e
        finally:
            theirs.close()  # the child has its copy; ours must go, or its death would not read as EOF
        return _Decoder(process, Connection(ours.detach()))

    def _wait_ready(self, decoder: _Decoder) -> None:
        """Wait for a new decoder's "ready"; one that does not say it in time is ended."""
        try:
            if decoder.conn.poll(self.start_timeout_s):
                said = json.loads(decoder.conn.recv_bytes(MAX_MESSAGE_BYTES))
                decoder.ready = isinstance(said, dict) and said.get("ready") == decoder.pid
        except (EOFError, OSError, ValueError):
            pass
        if not decoder.ready:
            how = _describe_exit(self._end(decoder, 0.0))
            self._missing_one()
            raise SandboxUnavailable(
                f"a decoder process was not ready within {self.start_timeout_s:g} s (it {how}); check that "
                f"'{' '.join(DECODER_COMMAND)} --help' runs, and free memory and the process limit"
            )

    def _end(self, decoder: _Decoder, grace_s: float) -> int | None:
        """Wait up to ``grace_s`` for the process to exit, kill it if it has not; returns its exit code."""
        with self._lock:
            self._busy.pop(decoder.pid, None)
        decoder.conn.close()
        try:
            return decoder.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            decoder.process.kill()
        try:
            return decoder.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # unkillable (uninterruptible sleep): the OS reaps it later
            return None

    def _acquire(self) -> _Decoder:
        """A ready decoder, marked busy; waits while all are busy, starts one where one is missing."""
        with self._lock:
            while self._running and not self._idle and not self._missing:
                self._lock.wait()
            if not self._running:
                raise SandboxUnavailable("the decode sandbox is stopped")
            if not self._idle:
                self._missing -= 1
                idle = None
            else:
                idle = self._idle.pop()
                self._busy[idle.pid] = idle
        if idle is None:
            return self._fresh()
        if not idle.ready:
            self._wait_ready(idle)
        return idle

    def _fresh(self) -> _Decoder:
        """A new, ready decoder process, marked busy."""
        with self._lock:
            if not self._running:
                raise SandboxUnavailable("the decode sandbox is stopped")
        try:
            decoder = self._spawn()
        except SandboxUnavailable:
            self._missing_one()
            raise
        with self._lock:
            self._busy[decoder.pid] = decoder
        self._wait_ready(decoder)
        return decoder

    def _missing_one(self) -> None:
        """Note a decoder gone without a replacement: the next decode that finds none idle starts one."""
        with self._lock:
            self._missing += 1
            self._lock.notify()

    def _replace_lost(self) -> None:
        """Put a new decoder process in the pool in place of a killed or dead one (or the first at start).
        It gets ready in the background; a failure to start is logged and retried by the next decode."""
        with self._lock:
            if not self._running:
                return
        try:
            decoder = self._spawn()
        except SandboxUnavailable as e:
            LOG.error("decode sandbox: %s; the next compressed instance tries again", e)
            self._missing_one()
            return
        self._release(decoder)

    def _release(self, decoder: _Decoder) -> None:
        with self._lock:
            decoder.decoding = False
            self._busy.pop(decoder.pid, None)
            if self._running:
                self._idle.append(decoder)
                self._lock.notify()
                return
        self._end(decoder, STOP_TIMEOUT_S)

"""The decoder process of the decode sandbox (:mod:`dicom_node.sandbox`): ``python -P decoder.py --fd N``.

Run as a script, it imports nothing of dermnode (only the standard library and pydicom). It decodes one
compressed frame at a time, as analysis does (``pixel_array(path, raw=False)``), under the address-space
limit each job carries, and answers only the decoded shape or the exception's type name. Messages are
JSON, never pickle: a decoder exploited by a crafted stream must not make the node run code by what it
answers.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import math
import os
import resource
import signal
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

#: pydicom's decoder plugins and the libraries they wrap, imported before the decoder says it is
#: ready, so that a first decode does not pay for them; missing ones are skipped.
PLUGINS = (
    "pydicom.pixels.decoders.gdcm",
    "pydicom.pixels.decoders.pillow",
    "pydicom.pixels.decoders.pylibjpeg",
    "pydicom.pixels.decoders.pyjpegls",
)
#: Longest message either side sends or accepts (a job or an answer is well under this).
MAX_MESSAGE_BYTES = 8192
#: CPU seconds a job may use, as a multiple of its wall-clock limit: a backstop that ends a decoder
#: left spinning if the node died mid-decode (the node's own wall-clock limit is the real bound).
CPU_BACKSTOP_FACTOR = 10


class ProtocolError(ValueError):
    """A message between the node and a decoder process is not what the protocol allows."""


@dataclass(frozen=True)
class Job:
    """Decode the frame of the Part 10 file at ``path`` within ``address_space`` bytes and ``timeout_s``."""

    path: str
    address_space: int
    timeout_s: float

    def encode(self) -> bytes:
        return json.dumps({"path": self.path, "address_space": self.address_space,
                           "timeout_s": self.timeout_s}).encode()

    @classmethod
    def decode(cls, message: bytes) -> Job:
        try:
            data = json.loads(message)
            job = cls(str(data["path"]), int(data["address_space"]), float(data["timeout_s"]))
        except (ValueError, TypeError, KeyError) as e:
            raise ProtocolError(f"not a decode job: {type(e).__name__}") from e
        return job


@dataclass(frozen=True)
class Decoded:
    """A decoder's answer: the decoded array's shape, or the type name of the exception it raised."""

    shape: tuple[int, ...] | None = None
    error: str | None = None

    def encode(self) -> bytes:
        return json.dumps({"shape": self.shape, "error": self.error}).encode()

    @classmethod
    def decode(cls, message: bytes) -> Decoded:
        """Read an answer strictly: the node trusts nothing a decoder process says beyond these two fields."""
        try:
            data = json.loads(message)
            shape, error = data["shape"], data["error"]
        except (ValueError, TypeError, KeyError) as e:
            raise ProtocolError(f"not a decoder answer: {type(e).__name__}") from e
        if (shape is None) == (error is None):
            raise ProtocolError("a decoder answer holds either a shape or an error")
        if shape is not None:
            if not isinstance(shape, list) or len(shape) > 4 or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
            ):
                raise ProtocolError("a decoder answer's shape is not a short list of sizes")
            return cls(shape=tuple(shape))
        if not isinstance(error, str) or not error.isidentifier() or len(error) > 100:
            raise ProtocolError("a decoder answer's error is not an exception type name")
        return cls(error=error)


def _limit(job: Job) -> None:
    """Set this process's soft address-space and CPU limits for ``job`` (never above the hard limits)."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = job.address_space if hard == resource.RLIM_INFINITY else min(job.address_space, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(used.ru_utime + used.ru_stime + CPU_BACKSTOP_FACTOR * job.timeout_s) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu if hard == resource.RLIM_INFINITY else min(cpu, hard), hard))


def serve(conn: Connection) -> None:
    """Say ready, then answer each job until the node closes the connection."""
    from pydicom.pixels import pixel_array

    for name in PLUGINS:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    try:
        conn.send_bytes(json.dumps({"ready": os.getpid()}).encode())
        while True:
            job = Job.decode(conn.recv_bytes(MAX_MESSAGE_BYTES))
            try:
                _limit(job)
                answer = Decoded(shape=tuple(int(n) for n in pixel_array(job.path, raw=False).shape))
            except Exception as e:  # every decoder error (MemoryError at the limit too) means "cannot decode"
                answer = Decoded(error=type(e).__name__)
            conn.send_bytes(answer.encode())
    except (EOFError, OSError, ProtocolError):
        return  # the node closed the connection (it stops us so), or is gone


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A decoder process of dermnode's decode sandbox.")
    parser.add_argument("--fd", type=int, required=True, help="the connected socket to the node")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the node stops us
    warnings.simplefilter("ignore")  # pydicom's warnings quote values (patient identifiers)
    logging.disable(logging.CRITICAL)
    serve(Connection(args.fd))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

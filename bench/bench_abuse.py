"""Protocol abuse against a node with default limits, on loopback: how fast each is cut off, what it costs.

    .venv/bin/python -m bench.bench_abuse

Silent connection (no A-ASSOCIATE-RQ), a PDU trickled one byte per second, a P-DATA-TF announcing
256 MiB after 131,072 was agreed, and idle connections from one host while another sends. Prints the
rows of the RELIABILITY section of BENCHMARKS.md.
"""

from __future__ import annotations

import resource
import socket
import struct
import tempfile
import time
from pathlib import Path

from pynetdicom import AE

from dermnode.kernel.messages import AnalysisJob
from dermnode.kernel.settings import load_settings
from dicom_node.node import Node
from tests.factories import DERMOSCOPY_SOP_CLASS, dermoscopy_dataset
from tests.rawpeer import associate, connect, read_until_closed


class _Nowhere:
    def submit(self, job: AnalysisJob) -> None:
        del job

    def close(self) -> None:
        pass


def _closed_after(conn: socket.socket) -> tuple[float, bytes]:
    started = time.monotonic()
    reply = read_until_closed(conn, timeout=120)
    return time.monotonic() - started, reply


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, {}, {"bind_address": "127.0.0.1", "port": 0, "data_dir": Path(tmp) / "d",
                                            "allowed_peers": ["PYSCU"]})
        with Node(settings, _Nowhere()) as node:
            with connect(node.port) as conn:
                seconds, _ = _closed_after(conn)
            print(f"| silent TCP connection (no A-ASSOCIATE-RQ) | closed after {seconds:.1f} s |")

            with associate(node.port) as conn:
                started = time.monotonic()
                conn.settimeout(1.0)
                reply = b""
                header = struct.pack(">BBL", 0x04, 0, 1000)  # a P-DATA-TF of 1000 bytes, one byte a second
                for i in range(120):
                    try:
                        conn.sendall(header[i : i + 1] if i < len(header) else b"\x00")
                        reply = conn.recv(64)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    break
                what = "A-ABORT" if reply[:1] == b"\x07" else repr(reply[:10])
                print(f"| P-DATA-TF trickled at 1 byte/s | closed after {time.monotonic() - started:.1f} s ({what}) |")

            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            with associate(node.port) as conn:
                started = time.monotonic()
                conn.sendall(struct.pack(">BBL", 0x04, 0, 256 << 20))
                sent = 0
                try:
                    chunk = b"\x00" * 65536
                    while sent < (256 << 20):
                        conn.sendall(chunk)
                        sent += len(chunk)
                except OSError:
                    pass
                seconds, reply = _closed_after(conn)
            grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
            print(f"| P-DATA-TF announcing 256 MiB (131,072 agreed) | A-ABORT after "
                  f"{time.monotonic() - started:.2f} s, {sent / 1048576:.1f} MiB accepted by the socket before the "
                  f"close, peak RSS +{grown:.0f} MiB |")

            held = [connect(node.port, "127.0.0.1") for _ in range(6)]
            time.sleep(0.5)
            open_ones = 0
            for conn in held:
                conn.settimeout(0.2)
                try:
                    open_ones += conn.recv(1) != b""
                except TimeoutError:
                    open_ones += 1
                except OSError:
                    pass
            ae = AE(ae_title="PYSCU")
            ae.add_requested_context(DERMOSCOPY_SOP_CLASS, "1.2.840.10008.1.2.1")
            assoc = ae.associate("127.0.0.1", node.port, ae_title="DERMNODE", bind_address=("127.0.0.2", 0))
            status = assoc.send_c_store(dermoscopy_dataset()).Status if assoc.is_established else None
            if assoc.is_established:
                assoc.release()
            for conn in held:
                conn.close()
            print(f"| 6 idle connections from 127.0.0.1 | {open_ones} kept (per-host limit 4), the rest closed "
                  f"at once; 127.0.0.2 stored with status 0x{status or 0:04X} meanwhile |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

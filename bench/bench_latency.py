"""Study turnaround: from storescu's last acknowledgement to the SR and SEGs stored at the destination.

    .venv/bin/python -m bench.bench_latency --studies 5 --images 2 --rows 768 --columns 1024

Real processes: DCMTK storescu → ``dermnode serve`` (embedded worker, shipped bundles, CPU) →
DCMTK storescp. The quiet period (``--quiet``, default 1 s) is part of the figure, as it is in
production. Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tests import dcmtk
from tests.factories import write_study
from tests.processes import DermnodeProcess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=5)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--rows", type=int, default=768)
    parser.add_argument("--columns", type=int, default=1024)
    parser.add_argument("--quiet", type=float, default=1.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dermnode-latency-"))
    scp = dcmtk.StoreSCP(work / "received")
    node = DermnodeProcess(["serve", "--port", "0", "--bind", "127.0.0.1", "--data-dir", str(work / "node"),
                            "--allow", "STORESCU", "--destination", f"{scp.ae_title}@127.0.0.1:{scp.port}",
                            "--quiet-period", str(args.quiet), "--log-level", "WARNING"])
    per_study = 2 * args.images + 1
    times = []
    try:
        port = node.wait_listening()
        for i in range(args.studies):
            files = write_study(work / f"s{i}", n_images=args.images, rows=args.rows, columns=args.columns)
            done = dcmtk.storescu(port, files)
            start = time.perf_counter()
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            scp.wait_for((i + 1) * per_study, timeout=300)
            times.append(time.perf_counter() - start)
    finally:
        node.stop()
        scp.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.studies} studies of {args.images} images {args.columns}x{args.rows}, quiet period {args.quiet:g} s\n")
    print("| turnaround (s) | median | min | max |")
    print("|---|---|---|---|")
    print(f"| last C-STORE acknowledged → {per_study} objects stored at destination | "
          f"{statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")


if __name__ == "__main__":
    main()

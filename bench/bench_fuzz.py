"""Intake fuzz, the long run of tests/dicom_node/test_fuzz.py: thousands of mutated instances (decompression
bombs, damaged streams, contradictory pixel attributes, character sets, byte damage) against a real node
on loopback; every acknowledged instance is then decoded and its SEGs and SR built, as analysis does.

    ulimit -v 6000000; .venv/bin/python -m bench.bench_fuzz --cases 2000 --seed 1

Prints the figures for the RELIABILITY section of BENCHMARKS.md; exits 1 if anything acknowledged
failed analysis or the node stopped serving.
"""

from __future__ import annotations

import argparse
import collections
import resource
import sys
import tempfile
import time
from pathlib import Path

from dermnode.kernel.messages import AnalysisJob
from dermnode.kernel.settings import load_settings
from dicom_node.node import Node
from dicom_node.status import Status
from tests import dcmtk
from tests.fuzzing import FuzzResult, analyse_acknowledged, fuzz_cases, lenient_pydicom, send_cases


class _Nowhere:
    def submit(self, job: AnalysisJob) -> None:
        del job

    def close(self) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = load_settings(None, {}, {"bind_address": "127.0.0.1", "port": 0, "data_dir": root / "data",
                                            "allowed_peers": ["PYSCU", "STORESCU"],
                                            "completion.quiet_period_s": 3600})
        result = FuzzResult()
        with Node(settings, _Nowhere()) as node:
            started = time.monotonic()
            with lenient_pydicom():
                send_cases(node.port, fuzz_cases(root / "cases", args.cases, seed=args.seed), result)
            sent_s = time.monotonic() - started
            serving = dcmtk.echoscu(node.port).returncode == 0
            analyse_acknowledged(node.ledger, result)
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    by_status = collections.Counter(result.statuses.values())
    names = {-1: "no response", -2: "not sendable (SCU)"}
    print(f"| cases | {len(result.statuses)} (seed {args.seed}) |")
    print(f"| node crashed / stopped serving | {'no' if serving else 'YES'} |")
    print(f"| associations used | {result.associations} |")
    for status, count in sorted(by_status.items()):
        label = names.get(status) or (f"0x{status:04X} {Status(status).name}" if status in set(Status)
                                      else f"0x{status:04X} UNDOCUMENTED")
        print(f"| {label} | {count} |")
    bombs = [f for f, n in result.names.items() if "-claims" in n]
    print(f"| compressed frames lying about their size (bombs up to 65000²) | {len(bombs)}, acknowledged "
          f"{sum(result.statuses[f] == 0 for f in bombs)} |")
    print(f"| acknowledged, then analysable | {result.analysed} |")
    print(f"| acknowledged, then failed analysis | {len(result.acknowledged_then_failed)} |")
    print(f"| peak RSS of node + sender + analysis | {peak_mib:.0f} MiB |")
    print(f"| sending time | {sent_s:.1f} s ({len(result.statuses) / sent_s:.0f} cases/s) |")
    for failure in result.acknowledged_then_failed[:20]:
        print("FAILED:", failure, file=sys.stderr)
    undocumented = set(by_status) - ({int(s) for s in Status} | {-2})
    return 1 if result.acknowledged_then_failed or not serving or undocumented else 0


if __name__ == "__main__":
    sys.exit(main())

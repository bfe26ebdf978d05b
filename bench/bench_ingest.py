"""Ingest speed: DCMTK storescu → dermnode vs → DCMTK storescp vs → Orthanc, side by side in one run.

    .venv/bin/python -m bench.bench_ingest --count 200 --rows 768 --columns 1024

Every receiver gets the same files over loopback with TCP_NODELAY, in interleaved rounds. dermnode's
figure includes its checks, fsync and ledger commit before each success; storescp writes files without
fsync; Orthanc (its default storage, SQLite index) is the reference PACS. The quiet period is set long
so that no analysis runs during the measurement. Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pydicom.uid import generate_uid

from tests import dcmtk
from tests.factories import dermoscopy_dataset
from tests.integration.test_orthanc import OrthancPACS
from tests.processes import DermnodeProcess


def _make_files(directory: Path, count: int, rows: int, columns: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    template = dermoscopy_dataset(rows=rows, columns=columns)
    study, series = generate_uid(), generate_uid()
    paths = []
    for i in range(count):
        template.StudyInstanceUID = study
        template.SeriesInstanceUID = series
        template.SOPInstanceUID = generate_uid()
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        template.InstanceNumber = i + 1
        path = directory / f"{i:05d}.dcm"
        template.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


class _PlainOrthanc(OrthancPACS):
    """The integration test's Orthanc, without auto-routing and its verbose log."""

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg["LuaScripts"] = []
        cfg["DicomAlwaysAllowStore"] = True
        return cfg


def _time_send(port: int, files: list[Path], called: str) -> float:
    start = time.perf_counter()
    done = dcmtk.storescu(port, files, called=called)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"storescu failed: {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rows", type=int, default=768)
    parser.add_argument("--columns", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-orthanc", action="store_true", help="leave Orthanc out")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dermnode-bench-"))
    try:
        files = _make_files(work / "in", args.count, args.rows, args.columns)
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        scp = dcmtk.StoreSCP(work / "storescp")
        orthanc: _PlainOrthanc | None = None
        if shutil.which("Orthanc") and not args.no_orthanc:
            (work / "orthanc").mkdir()
            orthanc = _PlainOrthanc(work / "orthanc", node_port=1)
            orthanc.start(str(shutil.which("Orthanc")))
        node = DermnodeProcess(["serve", "--port", "0", "--bind", "127.0.0.1", "--data-dir", str(work / "node"),
                                "--allow", "STORESCU", "--quiet-period", "3600", "--log-level", "WARNING"])
        try:
            port = node.wait_listening()
            results: dict[str, list[float]] = {"dermnode": [], "storescp": []}
            if orthanc is not None:
                results["Orthanc"] = []
            for _ in range(args.rounds):  # interleaved, so machine noise hits all alike
                results["storescp"].append(_time_send(scp.port, files, scp.ae_title))
                results["dermnode"].append(_time_send(port, files, "DERMNODE"))
                if orthanc is not None:
                    results["Orthanc"].append(_time_send(orthanc.dicom_port, files, "ORTHANC"))
        finally:
            node.stop()
            scp.stop()
            if orthanc is not None:
                orthanc.stop()
        print(f"{args.count} instances, {size_mb / args.count:.2f} MB each, {args.rounds} interleaved rounds "
              f"(best of each)\n")
        print("| receiver | instances/s | MB/s | relative to storescp |")
        print("|---|---|---|---|")
        best_scp = min(results["storescp"])
        for name, times in results.items():
            best = min(times)
            print(f"| {name} | {args.count / best:.0f} | {size_mb / best:.0f} | {best_scp / best:.2f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

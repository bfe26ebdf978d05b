"""Scale-out: one-image studies through 1 worker vs 2 workers (one thread each), side by side in one run.

    .venv/bin/python -m bench.bench_workers --studies 40

Real processes on loopback: a private ``redis-server`` on an ephemeral port, ``dermnode serve --broker``,
``dermnode worker`` processes (``--concurrency 1``, ``OMP_NUM_THREADS=1``: one thread each), a DCMTK storescp
as the destination. All studies are sent with ``storescu``; the run ends when storescp has every object.
Throughput is studies per minute from the first C-STORE to the last object received; latency is, per study,
from its last C-STORE (the ledger's ``last_received``) to the ledger's ``study-delivered`` event (this
includes the completion quiet period, 1 s here). Then ``--lone`` studies one at a time through one worker,
with batching off and on, for the latency of a study that has no company. Prints the rows of BENCHMARKS.md's
scale-out tables.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from pydicom import dcmread

from dicom_node.ledger import Ledger
from tests import dcmtk
from tests.e2e import broker_args, expected_objects, serve_args
from tests.factories import write_study
from tests.processes import DermnodeProcess


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its living descendants, from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in family]
        family.update(children)
        frontier.extend(children)
    return sum(times.get(p, 0.0) for p in family)


def _machine_cpu_s() -> float:
    """CPU seconds (user + nice + system + irq + softirq) of the whole machine so far, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(fields[i]) for i in (0, 1, 2, 5, 6))
    return busy / os.sysconf("SC_CLK_TCK")


def _run(n_workers: int, studies: list[list[Path]], work: Path, worker_args: tuple[str, ...] = ("--concurrency", "1"),
         one_at_a_time: bool = False, worker_env: dict[str, str] | None = None) -> dict[str, float]:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise SystemExit("redis-server is not installed (apt install redis-server)")
    port = dcmtk.free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    server = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    name = f"{n_workers}-{uuid.uuid4().hex[:8]}"
    destination = dcmtk.StoreSCP(work / f"received-{name}")
    data_dir = work / f"node-{name}"
    one_thread = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    node = DermnodeProcess(serve_args(data_dir, destination, *broker_args(broker)), env=one_thread)
    workers = [DermnodeProcess(["worker", "--broker", broker, *worker_args, "--hostname", f"w{i}@%h"],
                               env={**one_thread, **(worker_env or {})}) for i in range(n_workers)]
    try:
        node_port = node.wait_listening()
        for worker in workers:
            worker.wait_for_log(r"ready\.", timeout=180)
        # Warm-up: one study through each worker's first job (model load) before the clock starts.
        for i in range(n_workers):
            warm = write_study(work / f"warm-{name}-{i}", n_images=1)
            assert dcmtk.storescu(node_port, warm).returncode == 0
        destination.wait_for(n_workers * expected_objects(1), timeout=300)
        before = len(destination.files())
        cpu_before = (_cpu_s(node.proc.pid), sum(_cpu_s(w.proc.pid) for w in workers), _machine_cpu_s())
        started = time.time()
        for n, files in enumerate(studies, start=1):
            sent = dcmtk.storescu(node_port, files)
            assert sent.returncode == 0, sent.stderr
            if one_at_a_time:  # the next study only once this one is delivered: no company to batch with
                destination.wait_for(before + n * expected_objects(1), timeout=300)
        destination.wait_for(before + len(studies) * expected_objects(1), timeout=1800)
        finished = time.time()
        cpu_after = (_cpu_s(node.proc.pid), sum(_cpu_s(w.proc.pid) for w in workers), _machine_cpu_s())
    finally:
        node.stop()
        for worker in workers:
            worker.stop()
        destination.stop()
        server.terminate()
        server.wait(timeout=30)
    ledger = Ledger(data_dir / "ledger.sqlite3")
    latencies = []
    for files in studies:
        study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        study = ledger.study(study_uid)
        assert study is not None
        delivered = [e.at for e in ledger.events(study_uid) if e.kind == "study-delivered"]
        assert delivered, f"study {study_uid} is {study.state} without a delivered event"
        latencies.append(delivered[-1] - study.last_received)
    ledger.close()
    latencies.sort()
    return {
        "studies_per_min": len(studies) / (finished - started) * 60,
        "wall_s": finished - started,
        "latency_median_s": statistics.median(latencies),
        "latency_p95_s": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
        "node_cpu_s_per_study": (cpu_after[0] - cpu_before[0]) / len(studies),
        "worker_cpu_s_per_study": (cpu_after[1] - cpu_before[1]) / len(studies),
        # Everything else on the machine: storescu, storescp, Redis, this script.
        "other_cpu_s_per_study": ((cpu_after[2] - cpu_before[2]) - (cpu_after[0] - cpu_before[0])
                                  - (cpu_after[1] - cpu_before[1])) / len(studies),
    }


def _print_scale_out(results: dict[int, dict[str, float]]) -> None:
    print("\n| workers | studies/min | wall (s) | last C-STORE → delivered, median (s) | p95 (s) "
          "| CPU s per study: workers / node / rest |")
    print("|---|---|---|---|---|---|")
    for n, r in results.items():
        print(f"| {n} | {r['studies_per_min']:.1f} | {r['wall_s']:.1f} | {r['latency_median_s']:.2f} | "
              f"{r['latency_p95_s']:.2f} | {r['worker_cpu_s_per_study']:.2f} / {r['node_cpu_s_per_study']:.2f} / "
              f"{r['other_cpu_s_per_study']:.2f} |")
    print(f"\nratio 2 workers / 1 worker: {results[2]['studies_per_min'] / results[1]['studies_per_min']:.2f}")


#: Batching must not slow a lone study: one worker, batching off (1 job, batch 1) and on (4 jobs, batch 8).
LONE_CONFIGS = {
    "batching off": ("--concurrency", "1", "--batch-size", "1"),
    "batching on": ("--concurrency", "4", "--batch-size", "8"),
}


def _lone(work: Path, count: int, rounds: int, size: dict[str, int]) -> None:
    """Studies one at a time (no company to batch with), rounds alternating the configurations."""
    latencies: dict[str, list[float]] = {label: [] for label in LONE_CONFIGS}
    for round_ in range(rounds):
        for label, worker_args in LONE_CONFIGS.items():
            studies = [write_study(work / f"lone-{round_}-{label[-3:]}-{i}", n_images=1, rows=size["rows"],
                                   columns=size["columns"]) for i in range(count)]
            result = _run(1, studies, work, worker_args, one_at_a_time=True)
            print(round_, label, result, flush=True)
            latencies[label].append(result["latency_median_s"])
    print("\n| one study at a time, 1 worker | last C-STORE → delivered, median of round medians (s) |")
    print("|---|---|")
    for label, values in latencies.items():
        print(f"| {label} | {statistics.median(values):.2f} |")
    ratio = statistics.median(latencies["batching on"]) / statistics.median(latencies["batching off"])
    print(f"\nratio on / off: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=40, help="studies for 1 vs 2 workers (0: skip)")
    parser.add_argument("--rows", type=int, default=768, help="image size (default 1024x768, as bench_latency)")
    parser.add_argument("--columns", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of 1 vs 2 workers (the ratio's median)")
    parser.add_argument("--lone", type=int, default=10, help="studies sent one at a time, batching off vs on (0: skip)")
    parser.add_argument("--lone-rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dermnode-bench-workers-"))
    try:
        size = {"rows": args.rows, "columns": args.columns}
        print(f"one-image studies of {args.columns}x{args.rows}", flush=True)
        ratios = []
        for round_ in range(args.rounds if args.studies else 0):
            results = {}
            for n_workers in (1, 2):
                studies = [write_study(work / f"s{round_}-{n_workers}-{i}", n_images=1, rows=args.rows,
                                       columns=args.columns) for i in range(args.studies)]
                results[n_workers] = _run(n_workers, studies, work)
                print(n_workers, results[n_workers], flush=True)
            _print_scale_out(results)
            ratios.append(results[2]["studies_per_min"] / results[1]["studies_per_min"])
        if ratios:
            print(f"\nratios of {len(ratios)} round(s): {', '.join(f'{r:.2f}' for r in ratios)}; "
                  f"median {statistics.median(ratios):.2f}")
        if args.lone:
            _lone(work, args.lone, args.lone_rounds, size)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Bounded fuzz of intake against the real node on loopback (issue 10): a few hundred mutated instances,
decompression bombs among them. The node must survive every one, answer only documented statuses, and
every instance it acknowledged must be analysable. The long run is ``python -m bench.bench_fuzz``."""

from __future__ import annotations

import collections
import resource
from pathlib import Path

from dicom_node.node import Node
from dicom_node.status import Status
from tests import dcmtk
from tests.fuzzing import FuzzResult, analyse_acknowledged, fuzz_cases, lenient_pydicom, send_cases

CASES = 300


def test_fuzzed_instances_never_crash_the_node_and_nothing_acknowledged_fails_analysis(
    node: Node, tmp_path: Path
) -> None:
    result = FuzzResult()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with lenient_pydicom():
        send_cases(node.port, fuzz_cases(tmp_path / "cases", CASES, seed=10), result)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(result.statuses) == CASES
    assert dcmtk.echoscu(node.port).returncode == 0  # still serving
    documented = {int(s) for s in Status} | {-2}  # -2: the SCU itself could not send the file
    by_status = collections.Counter(result.statuses.values())
    assert set(by_status) <= documented, {f"0x{s:04X}": n for s, n in by_status.items() if s not in documented}
    bombs = [f for f, name in result.names.items() if "-claims" in name]
    refused = {Status.IMAGE_TOO_LARGE, Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, Status.CANNOT_UNDERSTAND}
    assert bombs and all(result.statuses[f] in refused for f in bombs)  # every claim is a lie, seen by the node
    assert by_status[-2] == 0  # every case reached the node
    assert by_status[Status.SUCCESS] > 20, by_status  # the valid part of the mix gets through
    analyse_acknowledged(node.ledger, result)
    assert result.acknowledged_then_failed == [], "\n".join(result.acknowledged_then_failed)
    assert result.analysed == sum(s.instance_count for s in node.ledger.studies())
    assert grown_mib < 500, f"the bombs cost {grown_mib:.0f} MiB"  # a 65000² decode alone would be 12 GiB

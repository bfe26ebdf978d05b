"""Cross-study batching: full passes when jobs run together, no wait for a lone job, errors to every caller."""

from __future__ import annotations

import threading

import pytest

from workers.batching import Batcher


def _doubling(calls: list[list[int]]) -> Batcher[int, int]:
    def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        return [2 * i for i in items]

    return Batcher(run, max_batch=4, max_wait_s=30.0)


def test_a_lone_job_never_waits_for_company() -> None:
    calls: list[list[int]] = []
    batcher = _doubling(calls)
    done = threading.Event()
    result: list[int] = []

    def lone() -> None:
        with batcher.job():
            result.extend(batcher.submit([1, 2]))
        done.set()

    threading.Thread(target=lone, daemon=True).start()
    assert done.wait(10), "a lone job waited for the 30 s batch wait"
    assert result == [2, 4] and calls == [[1, 2]]


def test_concurrent_jobs_share_passes_up_to_the_batch_size() -> None:
    calls: list[list[int]] = []
    batcher = _doubling(calls)
    together = threading.Barrier(3)
    results: dict[int, list[int]] = {}

    def job(n: int) -> None:
        with batcher.job():
            together.wait(10)
            results[n] = batcher.submit([10 * n, 10 * n + 1])

    threads = [threading.Thread(target=job, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == {n: [20 * n, 20 * n + 2] for n in range(3)}
    assert sorted(len(c) for c in calls) == [2, 4]  # two jobs in one full pass, the third in its own
    assert list(batcher.passes) == [len(c) for c in calls]


def test_a_failed_pass_raises_in_every_job_of_it() -> None:
    def run(items: list[int]) -> list[int]:
        raise ValueError("model failed")

    batcher: Batcher[int, int] = Batcher(run, max_batch=8, max_wait_s=30.0)
    with pytest.raises(ValueError, match="model failed"):
        batcher.submit([1])
    assert list(batcher.passes) == []

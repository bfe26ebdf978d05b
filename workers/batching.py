"""Cross-study batching on a worker: images of concurrently running jobs share one forward pass.

A worker run with ``--pool threads --concurrency N`` runs N jobs at once; each job hands its images to the
one :class:`Batcher` of the process and waits. A pass starts as soon as ``max_batch`` images are waiting, or
every job in progress is waiting (nobody else is coming: a lone study never waits), or the oldest waiting
request has waited ``max_wait_s``. One pass runs at a time (the models are not thread-safe), so a GPU sees
few, full batches instead of many small ones.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class _Request(Generic[In, Out]):
    items: Sequence[In]
    since: float
    done: bool = False
    result: list[Out] = field(default_factory=list)
    error: BaseException | None = None


class Batcher(Generic[In, Out]):
    def __init__(self, run: Callable[[list[In]], list[Out]], max_batch: int, max_wait_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._run = run
        self._max_batch = max_batch
        self._max_wait = max_wait_s
        self._clock = clock
        self._cv = threading.Condition()
        self._waiting: list[_Request[In, Out]] = []
        self._active = 0
        self._running = False
        #: Sizes of the latest passes (for tests and logs).
        self.passes: collections.deque[int] = collections.deque(maxlen=1000)

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        """Count a job in progress while it runs (a pass waits for jobs that may still bring images)."""
        with self._cv:
            self._active += 1
        try:
            yield
        finally:
            with self._cv:
                self._active -= 1
                self._cv.notify_all()

    def _due(self) -> bool:
        if not self._waiting or self._running:
            return False
        if sum(len(r.items) for r in self._waiting) >= self._max_batch:
            return True
        if len(self._waiting) >= self._active:
            return True
        return self._clock() - self._waiting[0].since >= self._max_wait

    def _take(self) -> list[_Request[In, Out]]:
        taken: list[_Request[In, Out]] = []
        size = 0
        while self._waiting and (not taken or size + len(self._waiting[0].items) <= self._max_batch):
            request = self._waiting.pop(0)
            taken.append(request)
            size += len(request.items)
        return taken

    def submit(self, items: Sequence[In]) -> list[Out]:
        """Run ``items`` in a shared pass; returns their outputs in order (or raises the pass's error)."""
        request: _Request[In, Out] = _Request(items, self._clock())
        with self._cv:
            self._waiting.append(request)
            self._cv.notify_all()
            while not request.done:
                if self._due():
                    batch = self._take()
                    self._running = True
                    self._cv.release()
                    try:
                        self._execute(batch)
                    finally:
                        self._cv.acquire()
                        self._running = False
                        self._cv.notify_all()
                    continue
                timeout = None
                if self._waiting and not self._running:
                    timeout = max(0.0, self._max_wait - (self._clock() - self._waiting[0].since))
                self._cv.wait(timeout)
        if request.error is not None:
            raise request.error
        return request.result

    def _execute(self, batch: list[_Request[In, Out]]) -> None:
        flat = [item for request in batch for item in request.items]
        try:
            outputs = self._run(flat)
            if len(outputs) != len(flat):
                raise RuntimeError(f"a batch of {len(flat)} gave {len(outputs)} outputs")
        except Exception as e:
            for request in batch:
                request.error, request.done = e, True
            return
        self.passes.append(len(flat))
        start = 0
        for request in batch:
            request.result = outputs[start:start + len(request.items)]
            request.done = True
            start += len(request.items)

"""The one retry policy of dermnode: capped exponential back-off, bounded by attempts and/or a period.

Used for deliveries to destinations (each failed attempt is re-queued after :meth:`RetryPolicy.delay`)
and for queueing complete studies while the broker is unreachable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all (None: no limit on the count); the wait after failed attempt n is
    ``base_s · 2^(n-1)``, at most ``cap_s``; ``period_s`` (None: none) is how long after the first
    attempt retrying goes on, so that an outage of a day is outlasted however the attempts fall."""

    attempts: int | None = 5
    base_s: float = 2.0
    cap_s: float = 3600.0
    period_s: float | None = None

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError(f"base_s and cap_s must not be negative, got {self.base_s} and {self.cap_s}")
        if self.period_s is not None and self.period_s < 0:
            raise ValueError(f"period_s must not be negative, got {self.period_s}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt - 1, 62))

    def gives_up_after(self, attempt: int, elapsed_s: float = 0.0) -> bool:
        """True when failed attempt ``attempt``, ``elapsed_s`` after the first one, was the last allowed.

        With a period, the next attempt must still fall inside it: retrying stops when
        ``elapsed_s + delay(attempt)`` passes ``period_s``.
        """
        if self.attempts is not None and attempt >= self.attempts:
            return True
        if self.period_s is not None:
            return elapsed_s + self.delay(attempt) > self.period_s
        return False

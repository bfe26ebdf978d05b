from __future__ import annotations

import pytest

from dermnode.kernel.retry import RetryPolicy


def test_delays_double_from_the_base_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=6, base_s=2.0, cap_s=10.0)
    assert [policy.delay(n) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_gives_up_after_the_last_attempt_only() -> None:
    policy = RetryPolicy(attempts=3)
    assert [policy.gives_up_after(n) for n in (1, 2, 3)] == [False, False, True]
    assert not RetryPolicy(attempts=None).gives_up_after(10_000)


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    assert RetryPolicy(attempts=None, base_s=1.0, cap_s=60.0).delay(5_000) == 60.0


@pytest.mark.parametrize(("kwargs", "message"), [({"attempts": 0}, "attempts must be at least 1"),
                                                  ({"base_s": -1.0}, "must not be negative")])
def test_invalid_policies_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_a_period_bounds_retrying_whatever_the_count() -> None:
    policy = RetryPolicy(attempts=None, base_s=2.0, cap_s=600.0, period_s=86400.0)
    assert not policy.gives_up_after(500, elapsed_s=86400.0 - 600.0)  # the next try still falls inside
    assert policy.gives_up_after(500, elapsed_s=86400.0 - 599.0)
    assert RetryPolicy(attempts=3, period_s=86400.0).gives_up_after(3, elapsed_s=10.0)
    with pytest.raises(ValueError, match="period_s must not be negative"):
        RetryPolicy(period_s=-1.0)

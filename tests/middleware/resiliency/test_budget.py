"""The retry budget: retries stay a bounded share of requests, even in an outage."""

from __future__ import annotations

import asyncio

import pytest

from outrig.middleware import Pipeline
from outrig.middleware.resiliency import Retry, RetryBudget, RetryPolicy

from .fakes import FakeClock, RecordedSleep, Scripted, make_call


def test_the_floor_allows_min_per_second_times_window_retries_without_requests() -> None:
    budget = RetryBudget(ratio=0.2, window=10.0, min_per_second=1.0, clock=FakeClock())
    assert [budget.try_withdraw() for _ in range(11)] == [True] * 10 + [False]


def test_each_request_adds_ratio_of_a_retry() -> None:
    budget = RetryBudget(ratio=0.2, window=10.0, min_per_second=0.0, clock=FakeClock())
    assert not budget.try_withdraw()
    for _ in range(4):
        budget.deposit()
    assert not budget.try_withdraw()  # 0.8 of a retry
    budget.deposit()
    assert budget.try_withdraw()
    assert not budget.try_withdraw()
    for _ in range(50):
        budget.deposit()
    assert sum(budget.try_withdraw() for _ in range(20)) == 10


def test_requests_and_retries_age_out_of_the_window() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.5, window=10.0, min_per_second=0.0, clock=clock)
    for _ in range(10):
        budget.deposit()
    assert sum(budget.try_withdraw() for _ in range(10)) == 5
    clock.advance(5)
    assert not budget.try_withdraw()  # still within the window
    clock.advance(5)
    assert budget.balance == 0  # both the requests and the retries have aged out
    for _ in range(2):
        budget.deposit()
    assert budget.try_withdraw()


def test_withdrawals_age_out_so_the_floor_refills() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, window=10.0, min_per_second=1.0, clock=clock)
    assert sum(budget.try_withdraw() for _ in range(20)) == 10
    clock.advance(3)
    assert not budget.try_withdraw()
    clock.advance(7)
    assert sum(budget.try_withdraw() for _ in range(20)) == 10


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        RetryBudget(ratio=-0.1)
    with pytest.raises(ValueError, match="positive window"):
        RetryBudget(window=0)


async def _outage(callers: int, budget: RetryBudget | None) -> int:
    """`callers` concurrent calls against an always-failing target, maxRetries 5: attempts made."""
    endpoint = Scripted([503])
    retry = Retry(RetryPolicy.constant(0.0, max_retries=5), budget, sleep=RecordedSleep())
    results = await asyncio.gather(*(Pipeline([retry], endpoint)(make_call()) for _ in range(callers)))
    assert all(result.status == 503 for result in results)  # every caller gets the last failure
    return len(endpoint.calls)


@pytest.mark.parametrize(("ratio", "min_per_second"), [(0.2, 10.0), (0.2, 1.0), (0.1, 0.0)])
async def test_a_budget_bounds_attempts_per_request_in_an_outage(ratio: float, min_per_second: float) -> None:
    callers, window = 200, 10.0
    unbudgeted = await _outage(callers, None)
    budget = RetryBudget(ratio, window, min_per_second, clock=FakeClock())
    budgeted = await _outage(callers, budget)
    bound = callers * (1 + ratio) + min_per_second * window
    print(
        f"\n{callers} callers, maxRetries 5, budget {ratio:.0%} + {min_per_second:g}/s over {window:g}s: "
        f"{unbudgeted / callers:.2f} attempts per request without the budget, "
        f"{budgeted / callers:.2f} with it (bound {bound / callers:.2f})"
    )
    assert unbudgeted == callers * 6
    assert budgeted <= bound
    # Not vacuous: the budget spent what it allowed, rather than refusing every retry.
    assert budgeted >= bound - 1

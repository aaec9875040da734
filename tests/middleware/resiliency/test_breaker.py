"""The circuit breaker's state machine, with gobreaker's (and so Dapr's) semantics."""

from __future__ import annotations

import logging

import pytest

from outrig.middleware.resiliency import CircuitBreaker, CircuitOpenError, Counts, State, TripError

from .fakes import FakeClock, state_of


def make(
    clock: FakeClock, changes: list[tuple[State, State]] | None = None, **options: object
) -> CircuitBreaker:
    on_change = None if changes is None else lambda old, new: changes.append((old, new))
    return CircuitBreaker("b", clock=clock, on_change=on_change, **options)  # type: ignore[arg-type]


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record(breaker.acquire(), success=False)


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record(breaker.acquire(), success=True)


def test_defaults_are_daprs() -> None:
    breaker = CircuitBreaker()
    assert (breaker.max_requests, breaker.interval, breaker.timeout) == (1, 0.0, 60.0)
    assert breaker.trip_expression == "consecutiveFailures > 5"
    assert state_of(breaker) is State.CLOSED
    # As in gobreaker, zero means the default.
    zero = CircuitBreaker(max_requests=0, timeout=0)
    assert (zero.max_requests, zero.timeout) == (1, 60.0)


def test_trips_after_more_than_five_consecutive_failures_by_default() -> None:
    clock, changes = FakeClock(), list[tuple[State, State]]()
    breaker = make(clock, changes)
    fail(breaker, 5)
    assert state_of(breaker) is State.CLOSED
    assert breaker.counts == Counts(requests=5, total_failures=5, consecutive_failures=5)
    fail(breaker)
    assert state_of(breaker) is State.OPEN
    assert changes == [(State.CLOSED, State.OPEN)]
    assert breaker.counts == Counts()  # a new generation starts with every change of state


def test_a_success_resets_the_consecutive_failures() -> None:
    breaker = make(FakeClock())
    fail(breaker, 5)
    succeed(breaker)
    fail(breaker, 5)
    assert state_of(breaker) is State.CLOSED
    assert breaker.counts == Counts(requests=11, total_successes=1, total_failures=10, consecutive_failures=5)


def test_fails_fast_while_open_and_says_when_it_will_probe() -> None:
    clock = FakeClock()
    breaker = make(clock, trip="consecutiveFailures >= 2", timeout=30.0)
    fail(breaker, 2)
    clock.advance(10)
    with pytest.raises(CircuitOpenError) as refused:
        breaker.acquire()
    assert refused.value.state is State.OPEN
    assert refused.value.retry_after == pytest.approx(20.0)
    assert str(refused.value) == "circuit breaker 'b' is open; it lets a probe through in 20s"
    assert breaker.counts == Counts()  # refusals are not counted


def test_after_the_timeout_one_probe_passes_and_its_success_closes() -> None:
    clock, changes = FakeClock(), list[tuple[State, State]]()
    breaker = make(clock, changes, trip="consecutiveFailures >= 1", timeout=30.0)
    fail(breaker)
    clock.advance(29.9)
    assert state_of(breaker) is State.OPEN
    clock.advance(0.1)
    assert state_of(breaker) is State.HALF_OPEN
    probe = breaker.acquire()
    with pytest.raises(CircuitOpenError) as refused:
        breaker.acquire()  # max_requests 1: a second call waits for the probe's outcome
    assert refused.value.state is State.HALF_OPEN and refused.value.retry_after is None
    assert "half-open and its probe calls are in flight" in str(refused.value)
    breaker.record(probe, success=True)
    assert state_of(breaker) is State.CLOSED
    assert changes == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


def test_a_failed_probe_opens_again_for_a_full_timeout() -> None:
    clock = FakeClock()
    breaker = make(clock, trip="consecutiveFailures >= 1", timeout=30.0)
    fail(breaker)
    clock.advance(30)
    fail(breaker)  # the probe
    assert state_of(breaker) is State.OPEN
    clock.advance(29)
    assert state_of(breaker) is State.OPEN
    clock.advance(1)
    assert state_of(breaker) is State.HALF_OPEN


def test_half_open_needs_max_requests_consecutive_successes() -> None:
    clock = FakeClock()
    breaker = make(clock, trip="consecutiveFailures >= 1", max_requests=3)
    fail(breaker)
    clock.advance(60)
    tickets = [breaker.acquire() for _ in range(3)]
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    breaker.record(tickets[0], success=True)
    breaker.record(tickets[1], success=True)
    assert state_of(breaker) is State.HALF_OPEN
    breaker.record(tickets[2], success=True)
    assert state_of(breaker) is State.CLOSED


def test_any_failure_in_half_open_reopens() -> None:
    clock = FakeClock()
    breaker = make(clock, trip="consecutiveFailures >= 1", max_requests=3)
    fail(breaker)
    clock.advance(60)
    first, second = breaker.acquire(), breaker.acquire()
    breaker.record(first, success=True)
    breaker.record(second, success=False)
    assert state_of(breaker) is State.OPEN


def test_the_outcome_of_a_call_from_an_earlier_generation_is_ignored() -> None:
    clock = FakeClock()
    breaker = make(clock, trip="consecutiveFailures >= 1")
    slow = breaker.acquire()  # admitted while closed
    fail(breaker)  # trips
    clock.advance(60)
    probe = breaker.acquire()
    breaker.record(slow, success=True)  # too late: it must not close the breaker
    assert state_of(breaker) is State.HALF_OPEN
    breaker.record(probe, success=True)
    assert state_of(breaker) is State.CLOSED


def test_the_interval_clears_the_counts_while_closed() -> None:
    clock = FakeClock()
    breaker = make(clock, interval=10.0)
    fail(breaker, 5)
    clock.advance(9.9)
    assert breaker.counts.consecutive_failures == 5
    clock.advance(0.1)
    assert breaker.counts == Counts()
    fail(breaker, 5)  # five more in the new period do not trip
    assert state_of(breaker) is State.CLOSED
    fail(breaker)
    assert state_of(breaker) is State.OPEN


def test_without_an_interval_counts_are_never_cleared_while_closed() -> None:
    clock = FakeClock()
    breaker = make(clock)
    fail(breaker, 5)
    clock.advance(10_000)
    fail(breaker)
    assert state_of(breaker) is State.OPEN


def test_a_released_probe_frees_its_half_open_slot() -> None:
    clock = FakeClock()
    breaker = make(clock, trip="consecutiveFailures >= 1")
    fail(breaker)
    clock.advance(60)
    breaker.release(breaker.acquire())  # the caller went away: neither success nor failure
    assert state_of(breaker) is State.HALF_OPEN
    succeed(breaker)  # a new probe is admitted
    assert state_of(breaker) is State.CLOSED


def test_trip_sees_the_counts_of_the_generation() -> None:
    seen: list[Counts] = []

    def trip(counts: Counts) -> bool:
        seen.append(Counts(**{name: getattr(counts, name) for name in Counts.__slots__}))
        return counts.total_failures * 2 > counts.requests and counts.requests >= 4

    breaker = make(FakeClock(), trip=trip)
    succeed(breaker, 2)
    fail(breaker, 2)
    assert state_of(breaker) is State.CLOSED  # 2 of 4 is not more than half
    fail(breaker)
    assert state_of(breaker) is State.OPEN
    assert seen[-1] == Counts(requests=5, total_successes=2, total_failures=3, consecutive_failures=3)


def test_a_bad_trip_expression_fails_at_construction() -> None:
    with pytest.raises(TripError, match="unknown variable 'failures'"):
        CircuitBreaker(trip="failures > 5")


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        CircuitBreaker(timeout=-1)


def test_a_failing_listener_does_not_break_the_breaker(caplog: pytest.LogCaptureFixture) -> None:
    def broken(old: State, new: State) -> None:
        raise RuntimeError("listener bug")

    later: list[tuple[State, State]] = []
    breaker = CircuitBreaker("b", clock=FakeClock(), trip="consecutiveFailures >= 1", on_change=broken)
    breaker.add_listener(lambda old, new: later.append((old, new)))
    with caplog.at_level(logging.INFO, logger="outrig.middleware.resiliency"):
        fail(breaker)
    assert state_of(breaker) is State.OPEN
    assert later == [(State.CLOSED, State.OPEN)]  # listeners after the broken one still run
    assert "a state listener failed" in caplog.text
    assert "changed state from closed to open" in caplog.text

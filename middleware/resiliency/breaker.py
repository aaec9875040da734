"""A circuit breaker with Dapr's semantics (sony/gobreaker, which Dapr uses).

Closed: calls pass and are counted; when a failure makes `trip` true, the breaker opens.
Open: calls fail fast for `timeout`, then the breaker is half-open. Half-open: up to
`max_requests` calls pass as probes; that many consecutive successes close it, any
failure opens it again. In the closed state, counts are cleared every `interval` (never
when 0). Each change of state starts a new generation: the outcome of a call admitted in
an earlier generation is ignored, so a slow call from before a trip cannot close a breaker.

Time comes from an injectable monotonic `clock`; state changes are computed when the
breaker is asked (as gobreaker does), not by a timer. Not thread-safe: one event loop.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from . import trip as trip_expressions
from .durations import format_duration
from .trip import Counts, Trip

log = logging.getLogger("outrig.middleware.resiliency")

DEFAULT_TRIP = "consecutiveFailures > 5"
"""Dapr's (and gobreaker's) default `trip`."""


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


Listener = Callable[[State, State], None]
"""Called with (old, new) on every change of state: for logs, span events, metrics."""


class CircuitOpenError(Exception):
    """A call refused without being tried: the breaker is open, or half-open and busy.

    `retry_after` is the time left until the breaker lets a probe through (None when it
    is half-open and its probes are still out).
    """

    def __init__(self, name: str, state: State, retry_after: float | None) -> None:
        when = f"; it lets a probe through in {format_duration(retry_after)}" if retry_after else ""
        busy = "" if state is State.OPEN else " and its probe calls are in flight"
        super().__init__(f"circuit breaker {name!r} is {state.value}{busy}{when}")
        self.name = name
        self.state = state
        self.retry_after = retry_after


class CircuitBreaker:
    """One breaker, shared by all the calls it protects (one per target, say).

    Defaults are Dapr's: `max_requests` 1, `interval` 0 (never reset while closed),
    `timeout` 60 s, `trip` "consecutiveFailures > 5". As in gobreaker, a `max_requests`
    or `timeout` of 0 means the default. `trip` is an expression (compiled here, so a
    bad one fails at load) or an already compiled predicate.

    Use: `ticket = acquire()` (raises `CircuitOpenError`), run the call, then
    `record(ticket, success)`, or `release(ticket)` when the call was abandoned
    (cancelled by the caller), which is neither the target's success nor its failure.
    """

    def __init__(
        self,
        name: str = "",
        *,
        max_requests: int = 1,
        interval: float = 0.0,
        timeout: float = 60.0,
        trip: str | Trip = DEFAULT_TRIP,
        clock: Callable[[], float] = time.monotonic,
        on_change: Listener | None = None,
    ) -> None:
        if max_requests < 0 or interval < 0 or timeout < 0:
            raise ValueError("maxRequests, interval and timeout cannot be negative")
        self.name = name
        self.max_requests = max_requests or 1
        self.interval = interval
        self.timeout = timeout or 60.0
        self.trip_expression = trip if isinstance(trip, str) else None
        self._trip: Trip = trip_expressions.compile(trip) if isinstance(trip, str) else trip
        self._clock = clock
        self._listeners: list[Listener] = [on_change] if on_change is not None else []
        self._state = State.CLOSED
        self._generation = 0
        self._counts = Counts()
        self._expiry: float | None = None
        self._new_generation(clock())

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.value}, counts={self._counts})"

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @property
    def state(self) -> State:
        """The state now (an open breaker whose timeout has passed is half-open)."""
        return self._current(self._clock())

    @property
    def counts(self) -> Counts:
        """A copy of the counts of the current generation."""
        self._current(self._clock())
        return replace(self._counts)

    def acquire(self) -> int:
        """Admit a call, or raise `CircuitOpenError`; the ticket is for `record`/`release`."""
        now = self._clock()
        state = self._current(now)
        if state is State.OPEN:
            expiry = self._expiry if self._expiry is not None else now
            raise CircuitOpenError(self.name, state, max(expiry - now, 0.0))
        if state is State.HALF_OPEN and self._counts.requests >= self.max_requests:
            raise CircuitOpenError(self.name, state, None)
        self._counts.on_request()
        return self._generation

    def record(self, ticket: int, success: bool) -> None:
        """The outcome of an admitted call; ignored when the breaker moved on since."""
        now = self._clock()
        state = self._current(now)
        if ticket != self._generation:
            return
        if success:
            self._counts.on_success()
            if state is State.HALF_OPEN and self._counts.consecutive_successes >= self.max_requests:
                self._set_state(State.CLOSED, now)
        elif state is State.HALF_OPEN:
            self._set_state(State.OPEN, now)
        elif state is State.CLOSED:
            self._counts.on_failure()
            if self._trip(self._counts):
                self._set_state(State.OPEN, now)

    def release(self, ticket: int) -> None:
        """Forget an admitted call that never finished, so a half-open slot is not lost."""
        if ticket == self._generation and self._counts.requests > 0:
            self._counts.requests -= 1

    def _current(self, now: float) -> State:
        if self._expiry is not None and now >= self._expiry:
            if self._state is State.CLOSED:
                self._new_generation(now)
            elif self._state is State.OPEN:
                self._set_state(State.HALF_OPEN, now)
        return self._state

    def _set_state(self, state: State, now: float) -> None:
        old, self._state = self._state, state
        self._new_generation(now)
        log.info("circuit breaker %r changed state from %s to %s", self.name, old.value, state.value)
        for listener in self._listeners:
            try:
                listener(old, state)
            except Exception:
                log.exception("circuit breaker %r: a state listener failed", self.name)

    def _new_generation(self, now: float) -> None:
        self._generation += 1
        self._counts = Counts()
        if self._state is State.CLOSED:
            self._expiry = now + self.interval if self.interval > 0 else None
        elif self._state is State.OPEN:
            self._expiry = now + self.timeout
        else:
            self._expiry = None

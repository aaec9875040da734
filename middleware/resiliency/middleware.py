"""Timeout, retry and circuit breaker as pipeline middleware over `Call`/`Result`.

Dapr nests them as retry( breaker( timeout( operation ))) (dapr/dapr pkg/resiliency
`policy.go`): the timeout is per attempt, the breaker counts every attempt (timeouts
included) and the retry loop sees the breaker's refusals. The intended placement, with
tracing, is

    [..., CallMetrics, Retry, Breaker, ClientTracing, Timeout, endpoint]

Retry outside ClientTracing gives each attempt its own CLIENT span, the resends carrying
`http.request.resend_count`; Breaker outside it means a call refused without being sent
has no CLIENT span (its error still shows on the caller's SERVER span); Timeout inside it
ends the attempt's span with the timeout's 504 rather than a cancellation. Metrics stay
outside Retry: one measurement per call, whatever it took.

A failure is a raised `CallError` with a 5xx status, any other exception, or a `Result`
with a 5xx status. A 4xx is the caller's to fix: it neither trips a breaker nor is
retried unless a retry policy's `matching` lists it. (Dapr counts any non-2xx/3xx
invocation response as a failure for both.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import operator
import random
from collections.abc import Awaitable, Callable, Iterator

from .._call import Call, Next, Result, Stream
from .._errors import CallError
from .breaker import CircuitBreaker, CircuitOpenError
from .budget import RetryBudget
from .durations import format_duration
from .retry import RetryPolicy

log = logging.getLogger("outrig.middleware.resiliency")

ERR_RESILIENCY_TIMEOUT = "ERR_RESILIENCY_TIMEOUT"
"""A timeout policy or a retry deadline cut the call short: HTTP 504. Dapr answers the
same situation with a 500 whose message ends in "context deadline exceeded"; 504 says
that the sidecar, acting as a gateway, got no answer in time."""
ERR_CIRCUIT_OPEN = "ERR_CIRCUIT_OPEN"
"""The target's circuit breaker refused the call without trying it: HTTP 503. Dapr
answers 500 with "circuit breaker is open"; 503 says that the target is unavailable for
now (the error's `retry_after` detail says for how long), and is never retried here."""
ATTR_RESEND_COUNT = "http.request.resend_count"
"""Semantic conventions: the ordinal of a resend, on the span of each resend (not the first)."""


def _what(call: Call) -> str:
    operation = call.block if call.operation == call.block else f"{call.block}.{call.operation}"
    return f"{operation} to {call.target}"


def _failed(status: int) -> bool:
    return status >= 500


_CALL_FIELDS = operator.attrgetter(*(field.name for field in dataclasses.fields(Call) if field.init))
"""Every field of a Call, in order: a copy built from them is 3x cheaper than `replace`."""


def _attempt_copy(call: Call, retries: int) -> Call:
    """A shallow copy with its own metadata, attributes and links, so nothing leaks between attempts."""
    attempt = Call(*_CALL_FIELDS(call))
    attempt.metadata = call.metadata.copy()
    attempt.attributes = dict(call.attributes)
    attempt.links = list(call.links)
    if retries:
        attempt.attributes[ATTR_RESEND_COUNT] = retries
    return attempt


class Timeout:
    """Cuts one attempt short after `seconds` with a 504 `ERR_RESILIENCY_TIMEOUT`.

    It covers the call until its `Result` comes back, not the streaming of a body after.
    """

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("a timeout must be positive")
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Timeout({format_duration(self.seconds)})"

    async def __call__(self, call: Call, call_next: Next) -> Result:
        scope = asyncio.timeout(self.seconds)
        try:
            async with scope:
                return await call_next(call)
        except TimeoutError:
            if not scope.expired():
                raise  # someone else's timeout, below
        raise CallError(
            ERR_RESILIENCY_TIMEOUT,
            f"{_what(call)}: no answer within the timeout of {format_duration(self.seconds)} "
            "(context deadline exceeded)",
            504,
        )


class Breaker:
    """Runs calls through a `CircuitBreaker`; while it is open they fail fast with a 503.

    An attempt cancelled from above (the caller went away) is released, not counted:
    it says nothing about the target.
    """

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    def __repr__(self) -> str:
        return f"Breaker({self.breaker!r})"

    async def __call__(self, call: Call, call_next: Next) -> Result:
        try:
            ticket = self.breaker.acquire()
        except CircuitOpenError as refused:
            message = f"{_what(call)}: {refused}"
            retry_after = refused.retry_after
            raise CallError(ERR_CIRCUIT_OPEN, message, 503, permanent=True, retry_after=retry_after) from None
        try:
            result = await call_next(call)
        except CallError as error:
            self.breaker.record(ticket, not _failed(error.status))
            raise
        except Exception:
            self.breaker.record(ticket, False)
            raise
        except BaseException:
            self.breaker.release(ticket)
            raise
        self.breaker.record(ticket, not _failed(result.status))
        return result


Sleep = Callable[[float], Awaitable[None]]


class Retry:
    """Tries a call again, per a `RetryPolicy`, within a `RetryBudget` and a `deadline`.

    Each attempt runs on its own shallow copy of the call (own metadata and attributes),
    so what one attempt's layers add does not leak into the next; resends carry
    `http.request.resend_count`. A raised 5xx `CallError` (a transport failure, a
    timeout) is retried; a response is retried when the policy's status matching says so.
    A refusal marked permanent (an open circuit breaker) is never retried, as in Dapr.

    A call whose body is a `Stream` is tried once: the first attempt consumes the stream
    and it cannot be replayed (Dapr does not retry streamed requests either).

    `deadline` (seconds) bounds all attempts and the waits between them: a wait that
    would end past it is not made (the last failure is returned at once), and an attempt
    still running at the deadline ends with a 504 `ERR_RESILIENCY_TIMEOUT`. Without a
    deadline, budget or `max_retries`, a failing call is retried without end, as in Dapr.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        budget: RetryBudget | None = None,
        deadline: float | None = None,
        *,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if deadline is not None and deadline <= 0:
            raise ValueError("a retry deadline must be positive")
        self.policy = policy
        self.budget = budget
        self.deadline = deadline
        self._rng = rng or random.Random()
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"Retry({self.policy!r}, budget={self.budget!r}, deadline={self.deadline!r})"

    async def __call__(self, call: Call, call_next: Next) -> Result:
        if self.budget is not None:
            self.budget.deposit()
        loop = asyncio.get_running_loop()
        end = None if self.deadline is None else loop.time() + self.deadline
        replayable = isinstance(call.body, bytes)
        delays: Iterator[float] | None = None  # made at the first failure: most calls need none
        retries = 0
        while True:
            outcome = await self._attempt(call, retries, call_next, end)
            if not (replayable and self._retryable(outcome) and self.policy.allows(retries)):
                return _settle(outcome)
            if delays is None:
                delays = self.policy.backoff.delays(self._rng)
            delay = next(delays)
            if end is not None and loop.time() + delay >= end:
                return _settle(outcome)
            if self.budget is not None and not self.budget.try_withdraw():
                log.debug("%s: retry budget exhausted, not retrying", _what(call))
                return _settle(outcome)
            if isinstance(outcome, Result) and isinstance(outcome.body, Stream):
                await outcome.body.aclose()  # free the upstream connection of the failed attempt
            what = _what(call)
            log.debug("%s: attempt %d failed (%r), retrying in %.3fs", what, retries + 1, outcome, delay)
            await self._sleep(delay)
            retries += 1

    async def _attempt(
        self, call: Call, retries: int, call_next: Next, end: float | None
    ) -> Result | CallError:
        attempt = _attempt_copy(call, retries)
        if end is None:
            try:
                return await call_next(attempt)
            except CallError as error:
                return error
        scope = asyncio.timeout_at(end)
        try:
            async with scope:
                return await call_next(attempt)
        except CallError as error:
            return error
        except TimeoutError:
            if not scope.expired():
                raise
        raise CallError(
            ERR_RESILIENCY_TIMEOUT,
            f"{_what(call)}: no answer within the retry deadline of {format_duration(self.deadline or 0)} "
            f"({retries + 1} attempt{'s' if retries else ''}; context deadline exceeded)",
            504,
        )

    def _retryable(self, outcome: Result | CallError) -> bool:
        if isinstance(outcome, CallError):
            return _failed(outcome.status) and not outcome.details.get("permanent", False)
        if outcome.error is not None and outcome.error.details.get("permanent", False):
            return False
        return self.policy.retries_status(outcome.status)


def _settle(outcome: Result | CallError) -> Result:
    if isinstance(outcome, CallError):
        raise outcome
    return outcome

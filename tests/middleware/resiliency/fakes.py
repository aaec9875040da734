"""Fakes for the resiliency tests: a clock, a recorded sleep, a scripted endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from outrig.middleware import Call, CallError, Hop, Result
from outrig.middleware.resiliency import CircuitBreaker, State
from tests.middleware.test_pipeline import make_call as pipeline_call


def make_call(**overrides: object) -> Call:
    """A peer invocation (what resiliency wraps), from the pipeline tests' call maker."""
    defaults: dict[str, object] = {"hop": Hop.PEER, "route": "/v1.0/invoke/{appId}/method/{method}"}
    return pipeline_call(**{**defaults, **overrides})


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordedSleep:
    """Stands in for asyncio.sleep: records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


Outcome = int | CallError


class Scripted:
    """An endpoint answering with the given statuses / errors in turn, the last one forever.

    It records every call it receives, so tests can check each attempt's copy.
    """

    def __init__(self, outcomes: Sequence[Outcome]) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[Call] = []

    async def __call__(self, call: Call) -> Result:
        self.calls.append(call)
        outcome = self.outcomes[min(len(self.calls), len(self.outcomes)) - 1]
        await asyncio.sleep(0)
        if isinstance(outcome, CallError):
            raise outcome
        return Result(outcome, body=f"attempt {len(self.calls)}".encode())


def state_of(breaker: CircuitBreaker) -> State:
    """The breaker's state, read afresh (so a type checker does not narrow it across steps)."""
    return breaker.state

"""Dapr's retry policies: how long to wait between attempts, how often, and for which statuses.

Dapr builds them with cenkalti/backoff (dapr/kit `retry.Config`): `constant` waits
`duration` (default 5 s) every time; `exponential` starts at 500 ms and multiplies the
interval by 1.5 per retry up to `maxInterval` (default 60 s), each wait randomized by
±50% (the interval x rand(0.5..1.5)). `maxRetries` -1 (the default) retries without end.
`matching.httpStatusCodes` / `matching.gRPCStatusCodes` ("429,500-599") restrict retries
to the listed codes (dapr/dapr#6683).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


class Backoff(Protocol):
    """Produces the waits before each retry of one call (a fresh iterator per call)."""

    def delays(self, rng: random.Random) -> Iterator[float]: ...


@dataclass(frozen=True, slots=True)
class ConstantBackoff:
    """The same wait before every retry, as Dapr's `constant` policy (no jitter by default).

    `jitter` (0..1) spreads each wait over interval x [1 - jitter, 1 + jitter]: Dapr has
    none, so it stays 0 unless chosen, but many callers retrying a target that failed for
    all of them at once otherwise come back in lockstep.
    """

    interval: float = 5.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.interval < 0:
            raise ValueError("a constant retry interval cannot be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    def delays(self, rng: random.Random) -> Iterator[float]:
        while True:
            yield _randomized(self.interval, self.jitter, rng)


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """cenkalti/backoff's ExponentialBackOff with Dapr's settings.

    Wait n (from 0) is min(initial x multiplier^n, max) x rand(1 - r .. 1 + r). One
    deliberate difference: the randomized wait is capped at `max_interval` too, so a
    `maxInterval: 15s` never waits longer than 15 s (cenkalti caps the interval before
    randomizing, letting a wait reach 1.5 x maxInterval). Dapr also stops exponential
    retries after 15 minutes in all (cenkalti's MaxElapsedTime); the `Retry` middleware's
    deadline is the general form of that limit.
    """

    initial_interval: float = 0.5
    multiplier: float = 1.5
    randomization: float = 0.5
    max_interval: float = 60.0

    def __post_init__(self) -> None:
        if self.initial_interval <= 0 or self.max_interval <= 0:
            raise ValueError("exponential retry intervals must be positive")
        if self.multiplier < 1:
            raise ValueError("an exponential retry multiplier must be at least 1")
        if not 0 <= self.randomization <= 1:
            raise ValueError("randomization is a fraction between 0 and 1")

    def delays(self, rng: random.Random) -> Iterator[float]:
        interval = min(self.initial_interval, self.max_interval)
        while True:
            yield min(_randomized(interval, self.randomization, rng), self.max_interval)
            interval = min(interval * self.multiplier, self.max_interval)


def _randomized(interval: float, factor: float, rng: random.Random) -> float:
    if factor == 0:
        return interval
    return interval * (1 + factor * (2 * rng.random() - 1))


@dataclass(frozen=True, slots=True)
class StatusCodes:
    """A set of status codes written as Dapr's `matching` fields: "429,500-599"."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and any(low <= code <= high for low, high in self.ranges)

    @classmethod
    def http(cls, text: str) -> StatusCodes | None:
        """HTTP codes (100-599); None for an empty string, which Dapr treats as not set."""
        return cls._parse(text, "httpStatusCodes", 100, 599)

    @classmethod
    def grpc(cls, text: str) -> StatusCodes | None:
        """gRPC codes (0-16); None for an empty string, which Dapr treats as not set."""
        return cls._parse(text, "gRPCStatusCodes", 0, 16)

    @classmethod
    def _parse(cls, text: str, name: str, low: int, high: int) -> StatusCodes | None:
        ranges: list[tuple[int, int]] = []
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue  # Dapr skips empty entries ("500,,503")
            ends = item.split("-")
            if len(ends) > 2 or not all(end.strip().isdigit() for end in ends):
                raise ValueError(
                    f"matching.{name}: {item!r} is not a code or a range like {low}-{high}"
                    if len(ends) <= 2
                    else f"matching.{name}: {item!r} has more than one '-'"
                )
            start, end = int(ends[0]), int(ends[-1])
            for code in (start, end):
                if not low <= code <= high:
                    raise ValueError(f"matching.{name}: {code} in {item!r} is outside {low}-{high}")
            if end < start:
                raise ValueError(f"matching.{name}: {item!r} starts after it ends")
            ranges.append((start, end))
        return cls(tuple(ranges)) if ranges else None


_GRPC_SERVER_ERRORS = StatusCodes(((2, 2), (4, 4), (12, 15)))
"""gRPC codes whose HTTP equivalent is a 5xx: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
INTERNAL, UNAVAILABLE, DATA_LOSS."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """One named entry of a Resiliency's `policies.retries`.

    Without `matching`, a response is retried when its status is a 5xx; a 4xx is the
    caller's to fix and is retried only when matched (e.g. "429"). That differs from
    Dapr, which with no `matching` retries every non-2xx/3xx invocation response; write
    `httpStatusCodes: "400-599"` for Dapr's behaviour.
    """

    backoff: Backoff = field(default_factory=ConstantBackoff)
    max_retries: int = -1
    """-1: without end (Dapr's default); 0: never retry."""
    http_status_codes: StatusCodes | None = None
    grpc_status_codes: StatusCodes | None = None

    def __post_init__(self) -> None:
        if self.max_retries < -1:
            raise ValueError("maxRetries is -1 (without end), 0 or more")

    @classmethod
    def constant(
        cls,
        duration: float = 5.0,
        max_retries: int = -1,
        *,
        http_status_codes: StatusCodes | None = None,
        grpc_status_codes: StatusCodes | None = None,
    ) -> RetryPolicy:
        """Dapr's `policy: constant` with its `duration`."""
        return cls(ConstantBackoff(duration), max_retries, http_status_codes, grpc_status_codes)

    @classmethod
    def exponential(
        cls,
        max_interval: float = 60.0,
        max_retries: int = -1,
        *,
        http_status_codes: StatusCodes | None = None,
        grpc_status_codes: StatusCodes | None = None,
    ) -> RetryPolicy:
        """Dapr's `policy: exponential` with its `maxInterval` (starting at 500 ms, as Dapr)."""
        backoff = ExponentialBackoff(max_interval=max_interval)
        return cls(backoff, max_retries, http_status_codes, grpc_status_codes)

    def allows(self, retries_done: int) -> bool:
        """Whether one more retry is within `max_retries`."""
        return self.max_retries < 0 or retries_done < self.max_retries

    def retries_status(self, status: int) -> bool:
        """Whether a response with this HTTP status is worth another attempt."""
        if self.http_status_codes is None:
            return status >= 500
        return status in self.http_status_codes

    def retries_grpc(self, code: int) -> bool:
        """Whether a gRPC status code is worth another attempt (for a gRPC transport)."""
        return code in (self.grpc_status_codes or _GRPC_SERVER_ERRORS)

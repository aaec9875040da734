"""The rate-limiting middleware: outrig's `middleware.outrig.ratelimit` and Dapr's
`middleware.http.ratelimit`, both one `Limiter` over a local token bucket or Redis GCRA.

Over the limit a call is answered 429 `ERR_RATE_LIMITED` with `Retry-After` and
`RateLimit-Limit`/`-Remaining`/`-Reset` (gRPC maps 429 to RESOURCE_EXHAUSTED). A delivery
to the app (any call on the app channel but service invocation: pub/sub messages,
configuration updates, input-binding events) is never refused: it waits for its token
(backpressure), so everything arrives, at the configured rate; refusing it would lose it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal

from multidict import CIMultiDict
from opentelemetry import trace
from pydantic import Field

from .._call import Call, Hop, Next, Result
from .._errors import CallError
from .._lifecycle import MiddlewareContext
from ..plugins import PluginError
from ..resiliency.durations import parse_duration
from . import keys
from .bucket import LocalLimits, whole_seconds
from .decision import Decision
from .store import RETRY_INTERVAL, RedisLimits
from .telemetry import ADMITTED, DELAYED, LIMITED, UNAVAILABLE_CLOSED, UNAVAILABLE_OPEN, LimitTelemetry

if TYPE_CHECKING:
    from outrig.runtime.components.redis_connection import RedisSettings

ERR_RATE_LIMITED = "ERR_RATE_LIMITED"
ERR_RATE_LIMIT_UNAVAILABLE = "ERR_RATE_LIMIT_UNAVAILABLE"

FailureMode = Literal["open", "closed", "local"]


@dataclass(frozen=True)
class Settings:
    """A limiter's validated settings, whichever type's config they came from."""

    rate: float
    burst: int
    key: str = "global"
    redis: RedisSettings | None = None
    failure_mode: FailureMode = "open"
    limit_name: str = ""
    max_keys: int = 10_000
    trust_forwarded: bool = False
    """The `address` key believes `X-Forwarded-For`/`X-Real-IP` (set behind a proxy only)."""


class Limiter:
    """Decides each call against a bucket per key; see the module docstring."""

    own_time_limit: float | None = None
    """No limit on the time spent here (`Guarded`'s): a delivery waits for its token on purpose."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.app_id = ""
        self.key = keys.parse(settings.key, lambda: self.app_id, settings.trust_forwarded)
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        """How a delivery waits (tests replace it to run on their own clock)."""
        self.local = LocalLimits(settings.rate, settings.burst, settings.max_keys)
        """The limit itself in local mode; the fallback of `failureMode: local` otherwise."""
        self.shared = (
            RedisLimits(settings.redis, settings.rate, settings.burst, clock) if settings.redis else None
        )
        self.telemetry = LimitTelemetry(keys.normalise(settings.key))

    async def start(self, context: MiddlewareContext) -> None:
        self.app_id = context.app_id
        name = self.settings.limit_name or context.name
        shared = self.shared
        self.telemetry.bind(context.meter, name, (lambda: shared.up) if shared is not None else None)
        if shared is not None:
            await shared.open(name)

    async def stop(self) -> None:
        self.telemetry.unbind()
        if self.shared is not None:
            await self.shared.close()

    async def __call__(self, call: Call, call_next: Next) -> Result:
        if call.hop is Hop.APP_CHANNEL and call.block != "invoke":  # a delivery: never refused
            await self._wait_for_tokens(call)
            return await call_next(call)
        span = trace.get_current_span()
        if self.shared is None:
            decision = self.local.take(self.key(call), self.clock())
        else:
            shared = await self.shared.decide(self.key(call))
            if shared is None:
                return await self._unavailable(call, call_next, span)
            decision = shared
        if decision.allowed:
            self.telemetry.mark(span, ADMITTED, decision)
            return await call_next(call)
        self.telemetry.mark(span, LIMITED, decision)
        return limited(decision, f"rate limit exceeded for {call.block} {call.target}/{call.subject}")

    async def _unavailable(self, call: Call, call_next: Next, span: trace.Span) -> Result:
        """Redis cannot be reached: the configured failure mode decides."""
        mode = self.settings.failure_mode
        if mode == "local":
            decision = self.local.take(self.key(call), self.clock())
            self.telemetry.mark(span, ADMITTED if decision.allowed else LIMITED, decision, store_down=True)
            if decision.allowed:
                return await call_next(call)
            return limited(decision, f"rate limit exceeded for {call.block} {call.target}/{call.subject}")
        if mode == "open":
            self.telemetry.mark(span, UNAVAILABLE_OPEN, None, store_down=True)
            return await call_next(call)
        self.telemetry.mark(span, UNAVAILABLE_CLOSED, None, store_down=True)
        error = CallError(
            ERR_RATE_LIMIT_UNAVAILABLE,
            "the rate limit cannot be checked (its Redis is unreachable) and fails closed; retry later",
            503,
            retry_after=RETRY_INTERVAL,
        )
        return Result(503, CIMultiDict({"Retry-After": "1"}), error=error)

    async def _wait_for_tokens(self, call: Call) -> None:
        """Backpressure for deliveries: reserve the call's tokens (a batch takes one per
        message), then sleep off the debt; never refuse. Each waiter sleeps exactly its own
        share, so waiters go in order of arrival and none wakes only to find no token."""
        span = trace.get_current_span()
        cost = len(call.request) if call.operation == "deliver_bulk" and isinstance(call.request, list) else 1
        if cost <= 0:
            self.telemetry.mark(span, ADMITTED, None)
            return
        key = self.key(call)
        started = self.clock()
        waited = False
        store_down = False
        decision: Decision | None = None
        while True:
            if self.shared is None:
                wait = self.local.reserve(key, self.clock(), cost)
                break
            decision = await self.shared.decide(key, cost, reserve=True)
            if decision is not None:
                wait = decision.retry_after
                break
            store_down = True  # shared limit unreachable: the failure mode decides
            if self.settings.failure_mode == "open":
                wait = 0.0
                break
            if self.settings.failure_mode == "local":
                wait = self.local.reserve(key, self.clock(), cost)
                break
            waited = True  # closed: wait until Redis decides
            await self.sleep(RETRY_INTERVAL)
        if wait > 0:
            waited = True
            await self.sleep(wait)
        self.telemetry.mark(span, DELAYED if waited else ADMITTED, decision, store_down)
        if waited:
            self.telemetry.waited(span, self.clock() - started)


def limited(decision: Decision, message: str) -> Result:
    """The 429 answer, with the headers that tell the caller when to come back."""
    retry_after = whole_seconds(decision.retry_after)
    headers: CIMultiDict[str] = CIMultiDict(
        {
            "Retry-After": str(retry_after),
            "RateLimit-Limit": str(decision.limit),
            "RateLimit-Remaining": str(decision.remaining),
            "RateLimit-Reset": str(whole_seconds(decision.reset)),
        }
    )
    error = CallError(ERR_RATE_LIMITED, message, 429, retry_after=decision.retry_after)
    return Result(429, headers, error=error)


def redis_address(address: str) -> tuple[str, int]:
    """`redisHost` as host and port, parsed as every Redis component parses it; a
    ValueError says what is wrong and what would do."""
    from outrig.runtime.components.redis_connection import host_port

    try:
        host, port = host_port(address.strip())
    except ValueError:
        host, port = "", 0
    if not host:
        raise ValueError(f"it must be host:port, e.g. localhost:6379 (got {address!r})")
    return host, port


def default_burst(rate: float) -> int:
    """One second's worth, at least one call (as Dapr's limiter, tollbooth, does)."""
    return max(1, int(rate))


class RateLimit(Limiter):
    """`middleware.outrig.ratelimit`: any building block, any hop, keyed as configured."""

    @dataclass(frozen=True)
    class Config:
        requestsPerSecond: Annotated[float, Field(gt=0)]  # noqa: N815 - Dapr metadata names are camelCase
        burst: Annotated[int, Field(ge=1)] | None = None
        key: str = "global"
        mode: Literal["local", "cluster"] = "local"
        redisHost: str = ""  # noqa: N815
        redisUsername: str = ""  # noqa: N815
        redisPassword: str = field(default="", repr=False)  # noqa: N815
        redisDB: Annotated[int, Field(ge=0)] = 0  # noqa: N815
        enableTLS: bool = False  # noqa: N815
        redisTimeout: str = "500ms"  # noqa: N815
        failureMode: FailureMode = "open"  # noqa: N815
        limitName: str = ""  # noqa: N815
        maxKeys: Annotated[int, Field(ge=1)] = 10_000  # noqa: N815
        trustForwardedHeaders: bool = False  # noqa: N815

        def __post_init__(self) -> None:
            try:
                keys.parse(self.key, str)
            except ValueError as exc:
                raise PluginError(f"middleware 'middleware.outrig.ratelimit' setting 'key': {exc}", "key",
                                  self.key) from None  # fmt: skip
            try:
                if parse_duration(self.redisTimeout) <= 0:
                    raise ValueError(f"invalid duration {self.redisTimeout!r}: it must be more than 0")
            except ValueError as exc:
                raise PluginError(f"middleware 'middleware.outrig.ratelimit' setting 'redisTimeout': {exc}",
                                  "redisTimeout", self.redisTimeout) from None  # fmt: skip
            if self.mode == "cluster":
                if not self.redisHost:
                    raise PluginError(
                        "middleware 'middleware.outrig.ratelimit' setting 'redisHost': required with "
                        "mode 'cluster'; set it to the host:port of the Redis the sidecars share, "
                        "e.g. localhost:6379",
                        "redisHost",
                        self.redisHost,
                    )
                try:
                    redis_address(self.redisHost)
                except ValueError as exc:
                    raise PluginError(f"middleware 'middleware.outrig.ratelimit' setting 'redisHost': {exc}",
                                      "redisHost", self.redisHost) from None  # fmt: skip

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        redis = None
        if config.mode == "cluster":
            from outrig.runtime.components.redis_connection import RedisSettings

            host, port = redis_address(config.redisHost)
            timeout = parse_duration(config.redisTimeout)
            redis = RedisSettings(
                host, port, config.redisDB, config.redisUsername or None, config.redisPassword or None,
                config.enableTLS, dial_timeout=timeout, read_timeout=timeout,
            )  # fmt: skip
        settings = Settings(
            rate=config.requestsPerSecond,
            burst=config.burst or default_burst(config.requestsPerSecond),
            key=config.key,
            redis=redis,
            failure_mode=config.failureMode,
            limit_name=config.limitName,
            max_keys=config.maxKeys,
            trust_forwarded=config.trustForwardedHeaders,
        )
        super().__init__(settings, clock)


class DaprRateLimit(Limiter):
    """`middleware.http.ratelimit`, as Dapr's: `maxRequestsPerSecond` (default 100) per
    caller address (the connection's peer, as tollbooth's `RemoteAddr`; the forwarding
    headers only with `trustForwardedHeaders`), a burst of one second's worth."""

    @dataclass(frozen=True)
    class Config:
        maxRequestsPerSecond: Annotated[float, Field(gt=0)] = 100.0  # noqa: N815
        trustForwardedHeaders: bool = False  # noqa: N815 - outrig's: behind a proxy only

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        rate = config.maxRequestsPerSecond
        settings = Settings(
            rate=rate, burst=default_burst(rate), key="address", trust_forwarded=config.trustForwardedHeaders
        )
        super().__init__(settings, clock)

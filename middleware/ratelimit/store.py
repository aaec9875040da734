"""The cluster-wide limit: GCRA in Redis, one key per limit key, one script per decision.

Redis being unreachable is not an error of the call: `decide` answers None and the
middleware applies the configured failure mode. The outage is logged once when it starts
and once when it ends; while it lasts, Redis is tried again at most every
`RETRY_INTERVAL`, by one call at a time (the others apply the failure mode meanwhile), so
a dead or hung Redis costs the hot path nothing but a clock read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .decision import Decision
from .gcra import SCRIPT, decision_from_reply

if TYPE_CHECKING:
    from outrig.runtime.components.redis_connection import RedisConnection, RedisSettings, Script

log = logging.getLogger("outrig.middleware.ratelimit")

RETRY_INTERVAL = 0.5
"""Seconds between attempts to reach Redis while it is down."""


class RedisLimits:
    """Decisions for one limit shared by every sidecar that names it the same."""

    def __init__(
        self, target: RedisSettings, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.target = target
        self.burst = burst
        self.interval_us = 1e6 / rate
        self._args_tail = (repr(self.interval_us), str(burst))
        self.clock = clock
        self.prefix = ""
        self.up = True
        """False from the first failure until Redis answers again."""
        self.outages = 0
        self._down_since = 0.0
        self._retry_at = 0.0
        self._probing = False
        """A call is trying Redis while it is down: the others must not wait on it too."""
        self._connection: RedisConnection | None = None
        self._script: Script | None = None
        self._failures: tuple[type[Exception], ...] = ()

    async def open(self, name: str) -> None:
        """Connect (lazily importing the runtime's Redis client); a Redis that is down now
        is logged, not fatal: the limit applies its failure mode until Redis is back."""
        from outrig.runtime.components.redis_connection import (
            RedisConnection,
            RedisReplyError,
            RedisUnavailableError,
            Script,
        )

        self._connection = RedisConnection(self.target)
        self._script = Script(SCRIPT)
        self._failures = (RedisUnavailableError, RedisReplyError, OSError)
        self.prefix = f"outrig:ratelimit:{name}:"
        try:
            await self._connection.execute("PING")
        except self._failures as exc:
            self._failed(exc)

    async def decide(self, key: str, cost: int = 1, reserve: bool = False) -> Decision | None:
        """The shared decision, or None while Redis cannot be reached. With `reserve` the
        tokens are taken even if not there yet, and `retry_after` is the wait to sleep off."""
        assert self._connection is not None and self._script is not None, "open() first"
        probing = not self.up
        if probing:
            if self._probing or self.clock() < self._retry_at:
                return None
            self._probing = True  # the one probe: a hung Redis holds only this call
        try:
            reply = await self._connection.run_script(
                self._script, (self.prefix + key,), (*self._args_tail, cost, "1" if reserve else "0")
            )
        except self._failures as exc:
            self._failed(exc)
            return None
        finally:
            if probing:
                self._probing = False
        if not self.up:
            self._recovered()
        return decision_from_reply(reply, self.interval_us, self.burst)

    def _failed(self, exc: Exception) -> None:
        now = self.clock()
        self._retry_at = now + RETRY_INTERVAL
        if self.up:
            self.up = False
            self.outages += 1
            self._down_since = now
            log.warning(
                "rate limit %s: redis at %s is unreachable (%s); applying the failure mode until it is back",
                self.prefix.rstrip(":"), self.target.address, exc,
            )  # fmt: skip

    def _recovered(self) -> None:
        self.up = True
        log.warning(
            "rate limit %s: redis at %s is reachable again after %.1fs; the shared limit applies",
            self.prefix.rstrip(":"), self.target.address, self.clock() - self._down_since,
        )  # fmt: skip

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

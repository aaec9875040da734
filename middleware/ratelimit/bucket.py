"""The token bucket of the per-sidecar limiter: `rate` tokens a second, at most `burst` held.

Pure arithmetic on a clock the caller passes in, so it is tested with an injected clock and
costs a few float operations per call.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from .decision import Decision

EPSILON = 1e-9
"""Float slack, so that exactly enough refilled tokens count as enough."""


class TokenBucket:
    """One key's bucket; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def level(self, now: float) -> float:
        """Tokens held at `now` (a clock that went backwards refills nothing)."""
        return min(float(self.burst), self.tokens + max(0.0, now - self.stamp) * self.rate)

    def take(self, now: float, cost: int = 1) -> Decision:
        tokens = self.level(now)
        self.stamp = max(now, self.stamp)
        if tokens + EPSILON >= cost:
            tokens = max(0.0, tokens - cost)
            self.tokens = tokens
            return Decision(True, self.burst, int(tokens + EPSILON), 0.0, (self.burst - tokens) / self.rate)
        self.tokens = tokens
        return Decision(
            False,
            self.burst,
            max(0, int(tokens + EPSILON)),  # below 0 while deliveries' reservations are paid off
            (cost - tokens) / self.rate,
            (self.burst - tokens) / self.rate,
        )

    def reserve(self, now: float, cost: int = 1) -> float:
        """Take `cost` tokens whether there are enough or not (the level may go negative)
        and answer the seconds until that debt is paid off: a waiter sleeps off its own
        debt, so waiters are served in order of arrival and none wakes for nothing."""
        self.tokens = self.level(now) - cost
        self.stamp = max(now, self.stamp)
        return max(0.0, -self.tokens / self.rate)


class LocalLimits:
    """A bucket per key, for one sidecar. Past `max_keys` the least recently used key is
    forgotten (an idle bucket refills to full, so it carries little state worth keeping),
    so callers inventing keys cannot grow memory without end. An LRU makes that O(1): a
    scan for full buckets cost ~4.5 ms per new key at 10k keys."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def bucket(self, key: str, now: float) -> TokenBucket:
        """The key's bucket, marked most recently used (a new, full one if unknown)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:
                self.buckets.popitem(last=False)
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
        else:
            self.buckets.move_to_end(key)
        return bucket

    def take(self, key: str, now: float, cost: int = 1) -> Decision:
        return self.bucket(key, now).take(now, cost)

    def reserve(self, key: str, now: float, cost: int = 1) -> float:
        """Seconds to wait for `cost` tokens, taken now (see `TokenBucket.reserve`)."""
        return self.bucket(key, now).reserve(now, cost)


def whole_seconds(seconds: float) -> int:
    """A delay as HTTP's delta-seconds: whole, rounded up, at least 1 when there is a wait."""
    return max(1, math.ceil(seconds - EPSILON)) if seconds > 0 else 0

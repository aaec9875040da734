"""A retry budget, so retries cannot multiply the load on a target that is already failing.

Per-call `maxRetries` alone does not do that: with maxRetries 5, an outage turns every
request into six. A budget caps retries across all calls sharing it (one per target, say)
at a share of the recent requests plus a small floor, as Linkerd and Finagle do: by
default 20% of the requests of the last 10 s, plus 10 retries per second so that a target
with little traffic can still be retried. (Envoy's variant counts concurrency instead:
retries in flight up to 20% of active requests, at least 3.) Dapr has no retry budget.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RetryBudget:
    """Allows at most `ratio` x requests + `min_per_second` x `window` retries per `window`.

    Each first attempt `deposit()`s; each retry must `try_withdraw()` first and is not
    made when that returns False. Both are counted in `buckets` slices of the window, so
    they age out smoothly; time comes from an injectable monotonic `clock`.
    """

    def __init__(
        self,
        ratio: float = 0.2,
        window: float = 10.0,
        min_per_second: float = 10.0,
        *,
        buckets: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ratio < 0 or min_per_second < 0:
            raise ValueError("a retry budget's ratio and minimum per second cannot be negative")
        if window <= 0 or buckets < 1:
            raise ValueError("a retry budget needs a positive window and at least one bucket")
        self.ratio = ratio
        self.window = window
        self.min_per_second = min_per_second
        self._slice = window / buckets
        self._buckets = buckets
        self._clock = clock
        self._counts: deque[list[int]] = deque()
        """[slice index, requests, retries], oldest first."""

    def __repr__(self) -> str:
        return f"RetryBudget(ratio={self.ratio}, window={self.window}, min_per_second={self.min_per_second})"

    def deposit(self) -> None:
        """Count one request (a first attempt, not a retry)."""
        self._bucket()[1] += 1

    def try_withdraw(self) -> bool:
        """Take one retry from the budget if it has one."""
        if self.balance < 1:
            return False
        self._bucket()[2] += 1
        return True

    @property
    def balance(self) -> float:
        """Retries the budget allows now."""
        self._bucket()
        requests = sum(bucket[1] for bucket in self._counts)
        retries = sum(bucket[2] for bucket in self._counts)
        return self.ratio * requests + self.min_per_second * self.window - retries

    def _bucket(self) -> list[int]:
        index = int(self._clock() // self._slice)
        counts = self._counts
        while counts and counts[0][0] <= index - self._buckets:
            counts.popleft()
        if not counts or counts[-1][0] != index:
            counts.append([index, 0, 0])
        return counts[-1]

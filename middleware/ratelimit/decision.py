"""What a limiter decides for one call, whichever algorithm or store decided it."""

from __future__ import annotations

from typing import NamedTuple


class Decision(NamedTuple):
    """Admitted or not, and what the caller is told in `RateLimit-*` and `Retry-After`."""

    allowed: bool
    limit: int
    """The burst: how many calls the bucket holds when full."""
    remaining: int
    """Whole calls that would still be admitted right now."""
    retry_after: float
    """Seconds until this call would be admitted (0 when it was)."""
    reset: float
    """Seconds until the bucket is full again."""

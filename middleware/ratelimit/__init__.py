"""Rate limiting: a per-sidecar token bucket, or one limit shared by all sidecars (GCRA on Redis).

`RateLimit` is `middleware.outrig.ratelimit`, `DaprRateLimit` Dapr's `middleware.http.ratelimit`.
"""

from .bucket import LocalLimits, TokenBucket
from .decision import Decision
from .middleware import ERR_RATE_LIMIT_UNAVAILABLE, ERR_RATE_LIMITED, DaprRateLimit, Limiter, RateLimit

__all__ = [
    "DaprRateLimit",
    "Decision",
    "ERR_RATE_LIMITED",
    "ERR_RATE_LIMIT_UNAVAILABLE",
    "Limiter",
    "LocalLimits",
    "RateLimit",
    "TokenBucket",
]

"""Dapr's resiliency policies as pipeline middleware: timeouts, retries, circuit breakers.

Pure building blocks with no knowledge of Resiliency files or the sidecar: the loader
turns a `Resiliency` resource's policies into these objects (durations with
`parse_duration`, `trip` with `compile_trip`, `matching` with `StatusCodes`) and places
`Retry`, `Breaker` and `Timeout` in the pipeline of each target (see `middleware`).
"""

from .breaker import DEFAULT_TRIP, CircuitBreaker, CircuitOpenError, Listener, State
from .budget import RetryBudget
from .durations import format_duration, parse_duration
from .middleware import ATTR_RESEND_COUNT, ERR_CIRCUIT_OPEN, ERR_RESILIENCY_TIMEOUT, Breaker, Retry, Timeout
from .retry import Backoff, ConstantBackoff, ExponentialBackoff, RetryPolicy, StatusCodes
from .trip import VARIABLES as TRIP_VARIABLES
from .trip import Counts, Trip, TripError
from .trip import compile as compile_trip

__all__ = [
    "ATTR_RESEND_COUNT",
    "Backoff",
    "Breaker",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConstantBackoff",
    "Counts",
    "DEFAULT_TRIP",
    "ERR_CIRCUIT_OPEN",
    "ERR_RESILIENCY_TIMEOUT",
    "ExponentialBackoff",
    "Listener",
    "Retry",
    "RetryBudget",
    "RetryPolicy",
    "State",
    "StatusCodes",
    "TRIP_VARIABLES",
    "Timeout",
    "Trip",
    "TripError",
    "compile_trip",
    "format_duration",
    "parse_duration",
]

"""What a middleware may need beyond each call: a start with the sidecar's context, a stop.

Both hooks are optional. A middleware that keeps a connection (a shared rate limit on
Redis, say) or exports metrics opens it in `start` and closes it in `stop`; one that
needs neither defines neither.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from opentelemetry.metrics import Meter, NoOpMeter
from opentelemetry.trace import NoOpTracer, Tracer

log = logging.getLogger("outrig.middleware")


@dataclass(frozen=True)
class MiddlewareContext:
    """The sidecar a middleware runs in, as handed to its `start`."""

    app_id: str
    """The app id of the sidecar."""
    name: str
    """The middleware component's `metadata.name` (the type's name when built in code)."""
    meter: Meter = field(default_factory=lambda: NoOpMeter("outrig.middleware"))
    """Instruments made here are exported with the sidecar's metrics (no-op when off)."""
    tracer: Tracer = field(default_factory=NoOpTracer)
    """For spans of the middleware's own (a call's span is `trace.get_current_span()`)."""


@runtime_checkable
class Startable(Protocol):
    async def start(self, context: MiddlewareContext) -> None: ...


@runtime_checkable
class Stoppable(Protocol):
    async def stop(self) -> None: ...


async def start_all(named: Iterable[tuple[str, object]], context: MiddlewareContext) -> None:
    """Start every middleware that has a `start`, in order, each with its own name."""
    for name, middleware in named:
        if isinstance(middleware, Startable):
            await middleware.start(MiddlewareContext(context.app_id, name, context.meter, context.tracer))


async def stop_all(middleware: Iterable[object]) -> None:
    """Stop every middleware that has a `stop`; one that fails is logged, the rest still stop."""
    for link in middleware:
        if isinstance(link, Stoppable):
            try:
                await link.stop()
            except Exception:
                log.exception("middleware %s failed to stop", type(link).__name__)

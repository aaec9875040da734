"""Metrics as middleware: one duration measurement per call per hop, and calls in flight.

`outrig.call.duration` (seconds) carries the attributes a RED dashboard needs (the app id
comes from the resource): `operation` (`invoke`, `state.get`, `pubsub.publish`...), `hop`, `target` (app id or
component), `route` (a template, never a raw path), `status` and `error_code`. Every value
is bounded: routes are templates, and targets past `MAX_TARGETS` distinct values count as
`_other`, so a caller inventing app ids cannot grow the series without end.

Placed outermost, so it sees every call's outcome, errors included. Calls in flight are
counted in a plain dict and observed at collection: an SDK measurement costs ~13 us (the
SDK cleans and hashes every attribute each time), one per call is enough.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ._call import Call, Next, Result
from ._errors import CallError

MAX_TARGETS = 100
OTHER = "_other"


class BoundedValues:
    """The first `limit` distinct values pass; later new ones become `_other`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            return OTHER
        self._seen.add(value)
        return value


def operation_name(call: Call) -> str:
    return call.block if call.operation == call.block else f"{call.block}.{call.operation}"


class CallMetrics:
    """Records the calls of every pipeline it is placed in (one instance per sidecar)."""

    def __init__(self, meter: Meter, max_targets: int = MAX_TARGETS) -> None:
        self.targets = BoundedValues(max_targets)
        self.duration = meter.create_histogram(
            "outrig.call.duration", unit="s", description="Duration of building-block calls, per hop"
        )
        self._active: Counter[tuple[str, str]] = Counter()
        meter.create_observable_up_down_counter(
            "outrig.calls.active", [self._observe_active], description="Calls in progress, per hop"
        )

    def _observe_active(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {"hop": hop, "operation": operation})
            for (hop, operation), count in self._active.items()
        ]

    async def __call__(self, call: Call, call_next: Next) -> Result:
        key = (call.hop.value, operation_name(call))
        self._active[key] += 1
        start = time.perf_counter()
        status, code = 500, "ERR_INTERNAL"
        try:
            result = await call_next(call)
            status, code = result.status, (result.error.code if result.error is not None else "")
            return result
        except CallError as error:
            status, code = error.status, error.code
            raise
        finally:
            self._active[key] -= 1
            self.duration.record(
                time.perf_counter() - start,
                {
                    "operation": key[1],
                    "hop": key[0],
                    "target": self.targets(call.target),
                    "route": call.route,
                    "status": str(status),
                    "error_code": code,
                },
            )

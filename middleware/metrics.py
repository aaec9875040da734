"""Metrics as middleware: one duration measurement per call per hop, and calls in flight.

`outrig.call.duration` (seconds) carries the attributes a RED dashboard needs (the app id
comes from the resource): `operation` (`invoke`, `state.get`, `pubsub.publish`...), `hop`, `target` (app id or
component), `route` (a template, never a raw path), `status` and `error_code`. Every value
is bounded: routes are templates, and targets past `MAX_TARGETS` distinct values count as
`_other`, so a caller inventing app ids cannot grow the series without end.

Placed outermost, so it sees every call's outcome, errors included. Calls in flight are
counted in a plain dict and observed at collection. Durations go to a `record(seconds,
values)` function when the sidecar gives one (its pre-aggregated histogram: an SDK
measurement costs ~13 us, the SDK cleaning and hashing every attribute each time), else
to an SDK histogram of `meter`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

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


DURATION = "outrig.call.duration"
DURATION_DESCRIPTION = "Duration of building-block calls, per hop"
DURATION_KEYS = ("operation", "hop", "target", "route", "status", "error_code")
"""The attributes of each duration, in the order `record` takes their values."""

RecordDuration = Callable[[float, tuple[str, ...]], None]


class CallMetrics:
    """Records the calls of every pipeline it is placed in (one instance per sidecar)."""

    def __init__(
        self, meter: Meter, max_targets: int = MAX_TARGETS, record: RecordDuration | None = None
    ) -> None:
        self.targets = BoundedValues(max_targets)
        self.record = record or _sdk_histogram(meter)
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
            self.record(
                time.perf_counter() - start,
                (key[1], key[0], self.targets(call.target), call.route, str(status), code),
            )


def _sdk_histogram(meter: Meter) -> RecordDuration:
    histogram = meter.create_histogram(DURATION, unit="s", description=DURATION_DESCRIPTION)

    def record(seconds: float, values: tuple[str, ...]) -> None:
        histogram.record(seconds, dict(zip(DURATION_KEYS, values, strict=True)))

    return record

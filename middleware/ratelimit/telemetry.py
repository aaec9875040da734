"""Making every decision visible: on the call's span, and as metrics with bounded labels.

Counts are kept in a plain Counter and read by an observable counter at collection (an SDK
measurement per call costs ~13 us, more than the decision itself). Labels: `limit` (the
component's name), `key_kind` (the configured key spec, never a key's value), `decision`.
One set of instruments per meter serves every limiter of the sidecar: a limiter joins it
at start and leaves it at stop; limiters sharing a `limit` name add up (and the store is up
only while it is up for all of them).

Prometheus: `outrig_ratelimit_decisions_total{limit,key_kind,decision}` with decision one of
ADMITTED, LIMITED, DELAYED (a pub/sub delivery that waited for a token), UNAVAILABLE_OPEN,
UNAVAILABLE_CLOSED (Redis unreachable, failing open or closed); and
`outrig_ratelimit_store_up{limit}` (1 while the cluster-wide limit's Redis answers).
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import Span

from .decision import Decision

ADMITTED, LIMITED, DELAYED = "admitted", "limited", "delayed"
UNAVAILABLE_OPEN, UNAVAILABLE_CLOSED = "unavailable_open", "unavailable_closed"

ATTR_DECISION = "outrig.ratelimit.decision"
ATTR_LIMIT = "outrig.ratelimit.limit"
ATTR_KEY_KIND = "outrig.ratelimit.key_kind"
ATTR_REMAINING = "outrig.ratelimit.remaining"
ATTR_RETRY_AFTER = "outrig.ratelimit.retry_after_s"
ATTR_WAITED = "outrig.ratelimit.waited_s"
ATTR_STORE = "outrig.ratelimit.store"


class LimitTelemetry:
    """One limiter's counts and span marks."""

    def __init__(self, key_kind: str) -> None:
        self.limit = ""
        self.key_kind = key_kind
        self.counts: Counter[str] = Counter()
        self.store_up: Callable[[], bool] | None = None
        self._instruments: _Instruments | None = None

    def bind(self, meter: Meter, limit: str, store_up: Callable[[], bool] | None) -> None:
        self.unbind()
        self.limit = limit
        self.store_up = store_up
        self._instruments = _instruments(meter)
        self._instruments.members.append(self)

    def unbind(self) -> None:
        """Stop reporting (the limiter stopped): its counts leave the meter's callbacks."""
        if self._instruments is not None:
            self._instruments.members.remove(self)
            self._instruments = None

    def mark(self, span: Span, label: str, decision: Decision | None, store_down: bool = False) -> None:
        """Count the decision and put it on the span (an event too when the call was held)."""
        self.counts[label] += 1
        if not span.is_recording():
            return
        if label == ADMITTED and not store_down:  # the common case: one attribute (~4 us)
            span.set_attribute(ATTR_DECISION, ADMITTED)
            return
        span.set_attributes({ATTR_DECISION: label, ATTR_LIMIT: self.limit, ATTR_KEY_KIND: self.key_kind})
        if decision is not None:
            span.set_attribute(ATTR_REMAINING, decision.remaining)
        if store_down:
            span.set_attribute(ATTR_STORE, "unavailable")
            span.add_event("rate limit store unavailable", {ATTR_LIMIT: self.limit, ATTR_DECISION: label})
        if label == LIMITED and decision is not None:
            span.add_event(
                "rate limited",
                {
                    ATTR_LIMIT: self.limit,
                    ATTR_KEY_KIND: self.key_kind,
                    ATTR_RETRY_AFTER: decision.retry_after,
                },
            )

    def waited(self, span: Span, seconds: float) -> None:
        if span.is_recording():
            span.add_event("rate limit wait", {ATTR_LIMIT: self.limit, ATTR_WAITED: seconds})


class _Instruments:
    def __init__(self, meter: Meter) -> None:
        self.members: list[LimitTelemetry] = []
        meter.create_observable_counter(
            "outrig.ratelimit.decisions", [self._observe_decisions],
            description="Rate limit decisions, by limit, key kind and decision",
        )  # fmt: skip
        meter.create_observable_gauge(
            "outrig.ratelimit.store.up", [self._observe_store],
            description="1 while the cluster-wide limit's Redis answers, 0 while it is down",
        )  # fmt: skip

    def _observe_decisions(self, options: CallbackOptions) -> Iterable[Observation]:
        totals: Counter[tuple[str, str, str]] = Counter()
        for m in self.members:
            for label, count in m.counts.items():
                totals[m.limit, m.key_kind, label] += count
        return [
            Observation(count, {"limit": limit, "key_kind": key_kind, "decision": label})
            for (limit, key_kind, label), count in totals.items()
        ]

    def _observe_store(self, options: CallbackOptions) -> Iterable[Observation]:
        up: dict[str, bool] = {}
        for m in self.members:
            if m.store_up is not None:
                up[m.limit] = up.get(m.limit, True) and m.store_up()
        return [Observation(1 if is_up else 0, {"limit": limit}) for limit, is_up in up.items()]


_BY_METER: weakref.WeakKeyDictionary[Meter, _Instruments] = weakref.WeakKeyDictionary()


def _instruments(meter: Meter) -> _Instruments:
    found = _BY_METER.get(meter)
    if found is None:
        found = _BY_METER[meter] = _Instruments(meter)
    return found

"""The sidecar's metrics beyond per-call timing: component health, pub/sub deliveries and
backlog, and the process itself. Instruments are made once, from the sidecar's meter.

Prometheus names: `outrig_component_up{component,type}` (1 while its last call or check
succeeded), `outrig_pubsub_deliveries_total{pubsub,topic,outcome,redelivery}`,
`outrig_pubsub_backlog{pubsub,topic}` (polled every `BACKLOG_PERIOD`), and
`process_cpu_time_seconds_total{mode}`, `process_memory_usage_bytes`, and with mTLS on
`outrig_mtls_certificate_expiry_seconds` (seconds until the served workload certificate
expires: it climbs back at each renewal; alert when it nears 0); every series carries
`app_id` (from the meter provider's resource).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from prometheus_client import CollectorRegistry, make_asgi_app

from outrig.middleware import Call, CallError, Middleware, Next, Result
from outrig.middleware.metrics import BoundedValues, CallMetrics, RecordDuration
from outrig.telemetry.metrics import observe_process

BACKLOG_PERIOD = 5.0
BREAKER_LEVELS = {"closed": 0, "half-open": 1, "open": 2}
MAX_TOPICS = 100


class _Expiring(Protocol):
    @property
    def expires_at(self) -> _Datetime: ...


class _Datetime(Protocol):
    def timestamp(self) -> float: ...


class SidecarMetrics:
    def __init__(self, meter: Meter, record_duration: RecordDuration | None = None) -> None:
        self._meter = meter
        self.calls = CallMetrics(meter, record=record_duration)
        self.topics = BoundedValues(MAX_TOPICS)
        self._up: dict[tuple[str, str], bool] = {}
        self._backlog: dict[tuple[str, str], int] = {}
        self.deliveries = meter.create_counter(
            "outrig.pubsub.deliveries", description="Pub/sub events handled, by the app's verdict"
        )
        meter.create_observable_gauge(
            "outrig.component.up", [self._observe_up], description="1 while the component answers"
        )
        meter.create_observable_gauge(
            "outrig.pubsub.backlog", [self._observe_backlog], description="Events not yet acknowledged"
        )
        self._breakers: dict[str, str] = {}
        self.breaker_changes = meter.create_counter(
            "outrig.breaker.transitions", description="Circuit breaker state changes, by the new state"
        )
        meter.create_observable_gauge(
            "outrig.breaker.state", [self._observe_breakers], description="0 closed, 1 half-open, 2 open"
        )
        observe_process(meter)

    def certificate(self, identity: _Expiring) -> None:
        """Observe the expiry of `identity`'s current certificate (read at each collection)."""
        self._meter.create_observable_gauge(
            "outrig.mtls.certificate.expiry",
            [lambda _options: [Observation(identity.expires_at.timestamp() - time.time())]],
            unit="s",
            description="Seconds until the workload certificate served to peers expires",
        )

    def breaker(self, name: str, state: str) -> None:
        self._breakers[name] = state
        self.breaker_changes.add(1, {"breaker": name, "state": state})

    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(BREAKER_LEVELS[state], {"breaker": name}) for name, state in self._breakers.items()
        ]

    def component(self, name: str, component_type: str, up: bool) -> None:
        self._up[(name, component_type)] = up

    def delivered(self, pubsub: str, topic: str, outcome: str, redelivery: bool) -> None:
        self.deliveries.add(
            1,
            {
                "pubsub": pubsub,
                "topic": self.topics(topic),
                "outcome": outcome,
                "redelivery": "true" if redelivery else "false",
            },
        )

    def backlog(self, pubsub: str, topic: str, count: int) -> None:
        self._backlog[(pubsub, self.topics(topic))] = count

    def _observe_up(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(1 if up else 0, {"component": name, "type": kind})
            for (name, kind), up in self._up.items()
        ]

    def _observe_backlog(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {"pubsub": pubsub, "topic": topic})
            for (pubsub, topic), count in self._backlog.items()
        ]


class HealthProbe:
    """In a component's pipeline: its calls tell whether it is up (a 5xx: it is not)."""

    def __init__(self, metrics: SidecarMetrics, name: str, component_type: str) -> None:
        self.metrics, self.name, self.type = metrics, name, component_type

    async def __call__(self, call: Call, call_next: Next) -> Result:
        try:
            result = await call_next(call)
        except CallError as error:
            self.metrics.component(self.name, self.type, error.status < 500)
            raise
        self.metrics.component(self.name, self.type, result.status < 500)
        return result


def component_layers(metrics: SidecarMetrics | None, name: str, component_type: str) -> list[Middleware]:
    """The metrics layers of a component's pipeline (none when metrics are off)."""
    if metrics is None:
        return []
    return [metrics.calls, HealthProbe(metrics, name, component_type)]


def prometheus_app(registry: CollectorRegistry) -> object:
    """The ASGI app answering scrapes with the Prometheus text of `registry`."""
    return make_asgi_app(registry)

"""Dapr's `Resiliency` resources, turned into middleware per target, built once at start.

`spec.policies` name timeouts, retries and circuit breakers; `spec.targets` apply them to
apps (outbound invocations to that app id), and to components (`outbound`: calls to a
state store or broker; `inbound`: deliveries from a broker to the app). Each target gets
its own breaker and retry budget. Beyond Dapr, in outrig-named fields:
- `outrigRetryBudget` on a retry policy: `{enabled, ratio, minPerSecond, window}`, on by
  default (20% of recent requests plus 10 a second over 10 s, as Linkerd), so retries
  cannot multiply the load on a target that is down;
- `outrigDeadline` on a target: one deadline covering every attempt.
A bad field stops the start with the file, line, policy and field.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from outrig.middleware import Call, Middleware, Next, Result, fold
from outrig.middleware.resiliency import (
    DEFAULT_TRIP,
    Breaker,
    CircuitBreaker,
    Listener,
    Retry,
    RetryBudget,
    RetryPolicy,
    State,
    StatusCodes,
    Timeout,
    TripError,
    compile_trip,
    parse_duration,
)

from .resources import Resources
from .resources.documents import Document
from .resources.models import ResiliencyResource

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class BreakerSpec:
    max_requests: int
    interval: float
    timeout: float
    trip: str


@dataclass(frozen=True)
class BudgetSpec:
    enabled: bool = True
    ratio: float = 0.2
    min_per_second: float = 10.0
    window: float = 10.0


@dataclass(frozen=True)
class TargetPolicy:
    """What one target uses; the names are the policies' (for `/v1.0/metadata`)."""

    timeout: float | None = None
    retry: RetryPolicy | None = None
    budget: BudgetSpec | None = None
    breaker: BreakerSpec | None = None
    deadline: float | None = None
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)


class Chain:
    """One target's resiliency layers: outer (retry, breaker) sit outside the client span,
    so each attempt gets a span of its own; inner (timeout) sits inside, per attempt."""

    def __init__(self, outer: Sequence[Middleware], inner: Sequence[Middleware]) -> None:
        self.outer = tuple(outer)
        self.inner = tuple(inner)

    def __bool__(self) -> bool:
        return bool(self.outer or self.inner)

    def wrap(self, call_next: Next) -> Next:
        """`call_next` inside all of this chain's layers (for callers with no client span)."""
        return fold(self.outer, fold(self.inner, call_next))


class PerTarget:
    """Runs each call through the layers of its target (`call.target`), if it has any."""

    def __init__(self, layers: Mapping[str, Sequence[Middleware]]) -> None:
        self.layers = {target: tuple(chain) for target, chain in layers.items() if chain}

    async def __call__(self, call: Call, call_next: Next) -> Result:
        chain = self.layers.get(call.target)
        if chain is None:
            return await call_next(call)
        return await fold(chain, call_next)(call)


class ResiliencyPolicies:
    """Every target's policy, from all the Resiliency resources scoped to this app."""

    def __init__(self, resources: Resources, on_breaker_change: Callable[[str, State, State], None]) -> None:
        self.apps: dict[str, TargetPolicy] = {}
        self.components_outbound: dict[str, TargetPolicy] = {}
        self.components_inbound: dict[str, TargetPolicy] = {}
        self.loaded: list[dict[str, Any]] = []
        self._on_change = on_breaker_change
        for resource, doc in resources.resiliencies:
            self._load(resource, doc)

    # --- building layers --------------------------------------------------------------
    def chain(self, kind: str, target: str) -> Chain:
        """The layers for a target: kind `app`, `component-outbound`, `component-inbound`."""
        table = {"app": self.apps, "component-outbound": self.components_outbound,
                 "component-inbound": self.components_inbound}[kind]  # fmt: skip
        policy = table.get(target)
        if policy is None:
            return Chain((), ())
        outer: list[Middleware] = []
        if policy.retry is not None:
            budget = None
            if policy.budget is not None and policy.budget.enabled:
                b = policy.budget
                budget = RetryBudget(ratio=b.ratio, window=b.window, min_per_second=b.min_per_second)
            outer.append(Retry(policy.retry, budget, policy.deadline))
        if policy.breaker is not None:
            spec = policy.breaker
            name = f"{kind}/{target}"
            breaker = CircuitBreaker(
                name, max_requests=spec.max_requests, interval=spec.interval, timeout=spec.timeout,
                trip=spec.trip, on_change=self._listener(name),
            )  # fmt: skip
            outer.append(Breaker(breaker))
        inner: list[Middleware] = [Timeout(policy.timeout)] if policy.timeout else []
        return Chain(outer, inner)

    def _listener(self, name: str) -> Listener:
        return functools.partial(self._on_change, name)

    def per_target(self, kind: str) -> tuple[list[Middleware], list[Middleware]]:
        """Outer and inner layers for calls whose target varies (app ids): a `PerTarget`
        each, or none at all when no target has a policy (nothing to pay on the hot path)."""
        table = self.apps if kind == "app" else {}
        chains = {name: self.chain(kind, name) for name in table}
        outer = PerTarget({name: chain.outer for name, chain in chains.items()})
        inner = PerTarget({name: chain.inner for name, chain in chains.items()})
        return ([outer] if outer.layers else [], [inner] if inner.layers else [])

    def describe(self) -> list[dict[str, Any]]:
        return self.loaded

    # --- loading ----------------------------------------------------------------------
    def _load(self, resource: ResiliencyResource, doc: Document) -> None:
        spec = resource.spec
        policies = _mapping(spec.get("policies") or {}, doc, ("spec", "policies"))
        timeouts = {
            name: _duration(value, doc, ("spec", "policies", "timeouts", name))
            for name, value in _mapping(
                policies.get("timeouts") or {}, doc, ("spec", "policies", "timeouts")
            ).items()
        }
        retries: dict[str, tuple[RetryPolicy, BudgetSpec]] = {}
        for name, value in _mapping(
            policies.get("retries") or {}, doc, ("spec", "policies", "retries")
        ).items():
            retries[name] = _retry(value, doc, ("spec", "policies", "retries", name))
        breakers: dict[str, BreakerSpec] = {}
        for name, value in _mapping(
            policies.get("circuitBreakers") or {}, doc, ("spec", "policies", "circuitBreakers")
        ).items():
            breakers[name] = _breaker(value, doc, ("spec", "policies", "circuitBreakers", name))
        named = (timeouts, retries, breakers)
        targets = _mapping(spec.get("targets") or {}, doc, ("spec", "targets"))
        for app_id, value in _mapping(targets.get("apps") or {}, doc, ("spec", "targets", "apps")).items():
            self.apps[app_id] = _target(value, doc, ("spec", "targets", "apps", app_id), named)
        components = _mapping(targets.get("components") or {}, doc, ("spec", "targets", "components"))
        for component, value in components.items():
            where: Path_ = ("spec", "targets", "components", component)
            directions = _mapping(value, doc, where)
            for direction, table in (
                ("outbound", self.components_outbound),
                ("inbound", self.components_inbound),
            ):
                if direction in directions:
                    table[component] = _target(directions[direction], doc, (*where, direction), named)
        self.loaded.append({"name": resource.metadata.name, "file": str(doc.file), "spec": spec})


def _mapping(value: Any, doc: Document, path: Path_) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise doc.error(path, "must be a mapping of names to settings", value)
    return value


def _duration(value: Any, doc: Document, path: Path_) -> float:
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise doc.error(path, str(exc), value, hint='write a duration such as "500ms" or "5s"') from None


def _whole(value: Any, doc: Document, path: Path_, default: int) -> int:
    if value is None:
        return default
    try:
        return int(str(value))
    except ValueError:
        raise doc.error(path, "must be a whole number", value) from None


def _retry(value: Any, doc: Document, path: Path_) -> tuple[RetryPolicy, BudgetSpec]:
    fields = _mapping(value, doc, path)
    kind = fields.get("policy", "constant")
    max_retries = _whole(fields.get("maxRetries"), doc, (*path, "maxRetries"), -1)
    matching = _mapping(fields.get("matching") or {}, doc, (*path, "matching"))
    try:
        http = StatusCodes.http(str(matching.get("httpStatusCodes", "")))
        grpc = StatusCodes.grpc(str(matching.get("gRPCStatusCodes", "")))
    except ValueError as exc:
        field = "httpStatusCodes" if "httpStatusCodes" in str(exc) else "gRPCStatusCodes"
        raise doc.error((*path, "matching", field), str(exc), matching.get(field)) from None
    if kind == "constant":
        duration = _duration(fields.get("duration", "5s"), doc, (*path, "duration"))
        policy = RetryPolicy.constant(duration, max_retries, http_status_codes=http, grpc_status_codes=grpc)
    elif kind == "exponential":
        cap = _duration(fields.get("maxInterval", "60s"), doc, (*path, "maxInterval"))
        policy = RetryPolicy.exponential(cap, max_retries, http_status_codes=http, grpc_status_codes=grpc)
    else:
        raise doc.error((*path, "policy"), "must be constant or exponential", kind)
    return policy, _budget(fields.get("outrigRetryBudget"), doc, (*path, "outrigRetryBudget"))


def _budget(value: Any, doc: Document, path: Path_) -> BudgetSpec:
    if value is None:
        return BudgetSpec()
    fields = _mapping(value, doc, path)
    try:
        return BudgetSpec(
            enabled=str(fields.get("enabled", True)).lower() != "false",
            ratio=float(fields.get("ratio", 0.2)),
            min_per_second=float(fields.get("minPerSecond", 10)),
            window=_duration(fields.get("window", "10s"), doc, (*path, "window")),
        )
    except (TypeError, ValueError) as exc:
        raise doc.error(path, f"ratio and minPerSecond must be numbers ({exc})", value) from None


def _breaker(value: Any, doc: Document, path: Path_) -> BreakerSpec:
    fields = _mapping(value, doc, path)
    trip = str(fields.get("trip", DEFAULT_TRIP))
    try:
        compile_trip(trip)
    except TripError as exc:
        raise doc.error((*path, "trip"), str(exc), trip) from None
    return BreakerSpec(
        max_requests=_whole(fields.get("maxRequests"), doc, (*path, "maxRequests"), 1),
        interval=_duration(fields.get("interval", "0s"), doc, (*path, "interval")),
        timeout=_duration(fields.get("timeout", "60s"), doc, (*path, "timeout")),
        trip=trip,
    )


def _target(
    value: Any,
    doc: Document,
    path: Path_,
    named: tuple[dict[str, float], dict[str, tuple[RetryPolicy, BudgetSpec]], dict[str, BreakerSpec]],
) -> TargetPolicy:
    timeouts, retries, breakers = named
    fields = _mapping(value, doc, path)
    names: dict[str, str] = {}

    def pick(field: str, table: Mapping[str, Any]) -> Any:
        name = fields.get(field)
        if name is None:
            return None
        if field == "timeout" and name not in table:
            try:  # Dapr lets a target give a duration in place of a policy name
                return parse_duration(str(name))
            except ValueError:
                pass
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise doc.error((*path, field), f"no {field} policy with this name", name,
                            hint=f"policies defined: {known}")  # fmt: skip
        names[field] = str(name)
        return table[name]

    timeout = pick("timeout", timeouts)
    retry = pick("retry", retries)
    breaker = pick("circuitBreaker", breakers)
    deadline = fields.get("outrigDeadline")
    return TargetPolicy(
        timeout=timeout,
        retry=retry[0] if retry else None,
        budget=retry[1] if retry else None,
        breaker=breaker,
        deadline=_duration(deadline, doc, (*path, "outrigDeadline")) if deadline is not None else None,
        names=names,
    )

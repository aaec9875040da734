"""Subscriptions: which topics the app wants, and which of its routes gets each event.

They come from the app (`GET /dapr/subscribe`, programmatic) or from `Subscription`
resources (declarative, `dapr.io/v2alpha1` with `routes`, or `v1alpha1` with `route`).
Routing follows Dapr: the rules in order, the first whose CEL `match` holds for the event
gives the path; else the default; else the event is dropped. Match expressions are
compiled once, when the subscription is read (cel-python; `event` is the CloudEvent).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("outrig.pubsub")

DECLARATIVE = "DECLARATIVE"
PROGRAMMATIC = "PROGRAMMATIC"


class SubscriptionError(ValueError):
    """A subscription that cannot be used; `field` is the path of the bad value in it."""

    def __init__(self, field: str, message: str, value: object = None) -> None:
        super().__init__(message)
        self.field, self.message, self.value = field, message, value


@dataclass(frozen=True)
class Rule:
    match: str
    path: str
    program: Any = None
    """The compiled CEL program (None for an empty match, which always holds)."""

    def holds(self, event: Mapping[str, Any]) -> bool:
        if self.program is None:
            return True
        from celpy.adapter import json_to_cel
        from celpy.celtypes import BoolType

        try:
            result = self.program.evaluate({"event": json_to_cel(dict(event))})
        except Exception as exc:  # a field the event lacks, a type mismatch: no match
            log.debug("match %r does not hold for event %s: %s", self.match, event.get("id"), exc)
            return False
        return isinstance(result, BoolType) and bool(result)


@dataclass(frozen=True)
class BulkSettings:
    """`bulkSubscribe`: events delivered to the app in batches (Dapr's defaults)."""

    max_messages: int = 100
    max_await_seconds: float = 1.0


@dataclass(frozen=True)
class Subscription:
    pubsub: str
    topic: str
    rules: tuple[Rule, ...] = ()
    default_path: str | None = None
    dead_letter_topic: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    kind: str = PROGRAMMATIC
    bulk: BulkSettings | None = None

    @property
    def raw_payload(self) -> bool:
        return str(self.metadata.get("rawPayload", "")).lower() == "true"

    def route(self, event: Mapping[str, Any]) -> str | None:
        for rule in self.rules:
            if rule.holds(event):
                return rule.path
        return self.default_path

    def describe(self) -> dict[str, Any]:
        """Its entry in `/v1.0/metadata`, in Dapr's shape."""
        rules = [{"match": r.match, "path": r.path} for r in self.rules]
        if self.default_path is not None:
            rules.append({"match": "", "path": self.default_path})
        return {
            "pubsubname": self.pubsub,
            "topic": self.topic,
            "metadata": dict(self.metadata),
            "rules": rules,
            "deadLetterTopic": self.dead_letter_topic or "",
            "type": self.kind,
            **({"bulkSubscribe": {"enabled": True, "maxMessagesCount": self.bulk.max_messages,
                                  "maxAwaitDurationMs": int(self.bulk.max_await_seconds * 1000)}}
               if self.bulk else {}),
        }  # fmt: skip


def _path(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SubscriptionError(where, "a route must be a non-empty path", value)
    return value if value.startswith("/") else "/" + value


def _text(item: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = item.get(name)
    if value is None or value == "":
        if required:
            raise SubscriptionError(name, f"{name} is required", value)
        return None
    if not isinstance(value, str):
        raise SubscriptionError(name, f"{name} must be a string", value)
    return value


def _compile(expression: str, where: str) -> Any:
    import celpy

    try:
        environment = celpy.Environment()
        return environment.program(environment.compile(expression))
    except Exception as exc:
        raise SubscriptionError(where, f"match is not a valid CEL expression: {exc}", expression) from None


def parse(item: object, kind: str = PROGRAMMATIC) -> Subscription:
    """One subscription as Dapr's apps and resources write it (`pubsubname`, `topic`,
    `route` or `routes: {rules: [{match, path}], default}`, `deadLetterTopic`, `metadata`)."""
    if not isinstance(item, Mapping):
        raise SubscriptionError("", "a subscription must be an object", item)
    pubsub = _text(item, "pubsubname", required=True)
    topic = _text(item, "topic", required=True)
    assert pubsub is not None and topic is not None
    rules: list[Rule] = []
    default: str | None = None
    routes = item.get("routes")
    if routes is not None:
        if not isinstance(routes, Mapping):
            raise SubscriptionError("routes", "routes must be an object with rules and default", routes)
        if routes.get("default"):
            default = _path(routes["default"], "routes.default")
        for i, rule in enumerate(routes.get("rules") or []):
            where = f"routes.rules[{i}]"
            if not isinstance(rule, Mapping):
                raise SubscriptionError(where, "a rule must be an object with match and path", rule)
            match = rule.get("match") or ""
            if not isinstance(match, str):
                raise SubscriptionError(f"{where}.match", "match must be a string", match)
            path = _path(rule.get("path"), f"{where}.path")
            rules.append(Rule(match, path, _compile(match, f"{where}.match") if match.strip() else None))
    if item.get("route"):
        if default is not None:
            raise SubscriptionError("route", "give route or routes.default, not both", item["route"])
        default = _path(item["route"], "route")
    if default is None and not rules:
        raise SubscriptionError("route", "a subscription needs a route (route, or routes.rules/default)")
    metadata = item.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise SubscriptionError("metadata", "metadata must be an object of strings", metadata)
    return Subscription(
        bulk=_bulk(item.get("bulkSubscribe")),
        pubsub=pubsub,
        topic=topic,
        rules=tuple(rules),
        default_path=default,
        dead_letter_topic=_text(item, "deadLetterTopic", required=False),
        metadata={str(k): str(v) for k, v in metadata.items()},
        kind=kind,
    )


def _bulk(value: object) -> BulkSettings | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SubscriptionError("bulkSubscribe", "bulkSubscribe must be an object with enabled", value)
    enabled = value.get("enabled", False)
    if str(enabled).lower() not in ("true", "false"):
        raise SubscriptionError("bulkSubscribe.enabled", "enabled must be true or false", enabled)
    if str(enabled).lower() == "false":
        return None
    defaults = BulkSettings()
    limits = {
        "maxMessagesCount": defaults.max_messages,
        "maxAwaitDurationMs": int(defaults.max_await_seconds * 1000),
    }
    for name in limits:
        raw = value.get(name)
        if raw is None:
            continue
        if isinstance(raw, bool) or not str(raw).isdigit() or int(str(raw)) < 1:
            raise SubscriptionError(f"bulkSubscribe.{name}", f"{name} must be a whole number above 0", raw)
        limits[name] = int(str(raw))
    return BulkSettings(limits["maxMessagesCount"], limits["maxAwaitDurationMs"] / 1000)


def from_app(items: object, app_id: str) -> list[Subscription]:
    """The app's answer to `GET /dapr/subscribe`; a bad entry is logged and skipped (the
    sidecar keeps serving the others)."""
    if not isinstance(items, list):
        log.error("app %s: GET /dapr/subscribe must answer a JSON list of subscriptions, got %s",
                  app_id, type(items).__name__)  # fmt: skip
        return []
    found: list[Subscription] = []
    for i, item in enumerate(items):
        try:
            found.append(parse(item))
        except SubscriptionError as exc:
            where = f"[{i}].{exc.field}" if exc.field else f"[{i}]"
            log.error("app %s: GET /dapr/subscribe: subscription %s: %s (value: %r); skipped",
                      app_id, where, exc.message, exc.value)  # fmt: skip
    return found

"""Publishing: Dapr's publish and bulk publish over pluggable brokers.

The adapter (HTTP, later gRPC) parses the request into `PublishRequest`; the block checks
the component, wraps each entry in a CloudEvent (or completes the app's own), and sends
the batch through the component's pipeline as one call: a PRODUCER span `send {topic}`
(OpenTelemetry messaging conventions) whose context the endpoint writes into every
event's `traceparent`, so the subscriber's delivery continues the publisher's trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict

from outrig.middleware import Call, CallError, Hop, Pipeline, Result

from ..components.pubsub import PubSub, PubSubError
from . import cloudevents
from .requests import request_of

TRACE_KEYS = ("traceparent", "tracestate")


def trace_carrier(*sources: Mapping[str, Any]) -> dict[str, str]:
    """The W3C trace context in `sources`: for each key, the first non-empty value."""
    carrier: dict[str, str] = {}
    for key in TRACE_KEYS:
        value = next((v for source in sources if isinstance(v := source.get(key), str) and v), None)
        if value is not None:
            carrier[key] = value
    return carrier


@dataclass(frozen=True)
class PublishEntry:
    """One message to publish: its payload as the app sent it, and how to send it."""

    data: bytes
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    entry_id: str = ""
    """The app's id for it in a bulk publish (failures are reported by it)."""
    event: dict[str, Any] | None = None
    """A CloudEvent the app sent itself, already parsed; completed, not wrapped."""

    @property
    def raw(self) -> bool:
        return str(self.metadata.get("rawPayload", "")).lower() == "true"


@dataclass(frozen=True)
class PublishRequest:
    entries: Sequence[PublishEntry]
    bulk: bool = False


@dataclass(frozen=True)
class Outgoing:
    """A message ready for the broker but for the trace fields, set in the endpoint."""

    entry_id: str
    event: dict[str, Any] | None
    """The CloudEvent to stamp and send; None for a raw payload."""
    data: bytes
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class Failure:
    entry_id: str
    error: str


@dataclass
class PubSubEntry:
    name: str
    type: str
    component: PubSub
    pipeline: Pipeline
    """The component pipeline: tracing (later resiliency), then `PublishEndpoint`."""


def ttl_seconds(metadata: Mapping[str, str], where: str) -> int | None:
    raw = metadata.get("ttlInSeconds")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise CallError(
            "ERR_PUBSUB_REQUEST_METADATA",
            f"{where}: metadata.ttlInSeconds must be a whole number of seconds, got {raw!r}",
            400,
        ) from None
    if value <= 0:
        raise CallError(
            "ERR_PUBSUB_REQUEST_METADATA", f"{where}: metadata.ttlInSeconds must be above 0, got {value}", 400
        )
    return value


class PubSubBlock:
    """The endpoint of inbound pipelines for `pubsub` calls (publish, bulk publish)."""

    def __init__(self, app_id: str, pubsubs: Mapping[str, PubSubEntry]) -> None:
        self.app_id = app_id
        self.pubsubs = pubsubs

    def entry(self, name: str) -> PubSubEntry:
        found = self.pubsubs.get(name)
        if found is None:
            if not self.pubsubs:
                raise CallError("ERR_PUBSUB_NOT_CONFIGURED", "pubsub is not configured", 400)
            names = ", ".join(sorted(self.pubsubs))
            raise CallError("ERR_PUBSUB_NOT_FOUND", f"pubsub {name} not found (configured: {names})", 404)
        return found

    async def __call__(self, call: Call) -> Result:
        entry = self.entry(call.target)
        request: PublishRequest = await request_of(call)
        outgoing = [self._prepare(e, call.subject, i, request.bulk) for i, e in enumerate(request.entries)]
        failures = await send(entry, call.subject, outgoing, call.metadata)
        if not failures:
            return Result(204)
        if not request.bulk:
            raise CallError(
                "ERR_PUBSUB_PUBLISH_MESSAGE",
                f"error when publishing to topic {call.subject} in pubsub {entry.name}: {failures[0].error}",
                500,
            )
        return Result(500, value=failures)

    def _prepare(self, entry: PublishEntry, topic: str, index: int, bulk: bool) -> Outgoing:
        where = f"entries[{index}] ({entry.entry_id})" if bulk else "publish"
        ttl = ttl_seconds(entry.metadata, where)
        metadata = {k: v for k, v in entry.metadata.items() if k != "rawPayload"}
        if entry.content_type:
            metadata["contentType"] = entry.content_type
        if entry.raw:
            return Outgoing(entry.entry_id, None, entry.data, metadata)
        if entry.event is not None:
            event = cloudevents.complete(entry.event, source=self.app_id, ttl_seconds=ttl)
        else:
            event = cloudevents.envelope(entry.data, entry.content_type, source=self.app_id, ttl_seconds=ttl)
        return Outgoing(entry.entry_id, event, b"", metadata)


async def send(
    entry: PubSubEntry, topic: str, outgoing: Sequence[Outgoing], metadata: CIMultiDict[str]
) -> list[Failure]:
    """Send a batch through the component pipeline (one PRODUCER span); the failures."""
    attributes: dict[str, Any] = {
        **entry.component.span_attributes,
        "messaging.destination.name": topic,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
    }
    if len(outgoing) == 1:
        if outgoing[0].event is not None:
            attributes["messaging.message.id"] = outgoing[0].event["id"]
    else:
        attributes["messaging.batch.message_count"] = len(outgoing)
    call = Call(
        block="pubsub", operation="publish", target=entry.name, subject=topic, hop=Hop.COMPONENT, route="",
        metadata=CIMultiDict(trace_carrier(metadata)), request=outgoing,
        attributes=attributes,
    )  # fmt: skip
    result = await entry.pipeline(call)
    failures: list[Failure] = result.value or []
    return failures


class PublishEndpoint:
    """The end of a pubsub component pipeline: stamp the trace context, hand to the broker."""

    def __init__(self, name: str, component: PubSub) -> None:
        self.name = name
        self.component = component

    async def __call__(self, call: Call) -> Result:
        outgoing: Sequence[Outgoing] = call.request
        trace = trace_carrier(call.metadata)
        results = await asyncio.gather(*(self._publish(call.subject, item, trace) for item in outgoing))
        failures = [f for f in results if f is not None]
        return Result(500 if failures else 204, value=failures)

    async def _publish(self, topic: str, item: Outgoing, trace: Mapping[str, str]) -> Failure | None:
        if item.event is not None:
            data = cloudevents.stamp(item.event, topic=topic, pubsub=self.name, trace=trace)
        else:
            data = item.data
        try:
            await self.component.publish(topic, data, {**item.metadata, **trace})
        except PubSubError as exc:
            return Failure(item.entry_id, str(exc))
        return None


def check_entry_id(entry_id: object, seen: set[str], where: str, field: str, path: str = "") -> str:
    """A bulk publish entry's id, checked as Dapr checks it on both APIs (present, unique
    within the request: `PubSubMarshalEvents`); added to `seen`. `path` names the field in
    the `BadRequest` detail (default `field`)."""
    if not isinstance(entry_id, str) or not entry_id:
        message = f"{where}: {field} is missing or not a non-empty string (got {entry_id!r})"
    elif entry_id in seen:
        message = f"{where}: {field} {entry_id!r} is used twice; entry ids must be unique"
    else:
        seen.add(entry_id)
        return entry_id
    raise CallError(
        "ERR_PUBSUB_EVENTS_SER",
        message,
        400,
        reason="DAPR_PUBSUB_MARSHAL_EVENTS",
        metadata={"error": "entryId is duplicated or not present for entry"},
        field_violations=[(path or field, message)],
    )


def app_cloudevent(data: bytes, where: str) -> dict[str, Any]:
    """A CloudEvent an app publishes itself, parsed; Dapr's error when it is not one."""
    try:
        return cloudevents.parse_app_event(data)
    except cloudevents.CloudEventError as exc:
        raise CallError(
            "ERR_PUBSUB_CLOUD_EVENTS_SER",
            f"{where}: not a valid CloudEvent: {exc}",
            400,
            reason="DAPR_PUBSUB_CLOUD_EVENT_CREATION",
        ) from None


def publish_entry(
    data: bytes, content_type: str, metadata: Mapping[str, str], entry_id: str, where: str
) -> PublishEntry:
    """One message as an app publishes it, on either API: its own CloudEvent (content type
    `application/cloudevents+json`, completed later) or a payload to wrap in one."""
    if content_type.split(";", 1)[0].strip().lower() == cloudevents.CLOUDEVENT_CONTENT_TYPE:
        event = app_cloudevent(data, where)
        return PublishEntry(data, cloudevents.CLOUDEVENT_CONTENT_TYPE, metadata, entry_id, event)
    return PublishEntry(data, content_type or None, metadata, entry_id)

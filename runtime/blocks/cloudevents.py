"""CloudEvents 1.0 envelopes, as Dapr builds and reads them (JSON structured mode).

Publishing wraps the app's payload (`envelope`), or completes a CloudEvent the app sent
itself (`complete`); either way the sidecar sets `topic`, `pubsubname` and the trace
context of its publish span, so the trace continues at the subscriber. Delivering reads
the stored bytes back (`read`), wrapping payloads published raw as Dapr does.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

CLOUDEVENT_CONTENT_TYPE = "application/cloudevents+json"
EVENT_TYPE = "com.dapr.event.sent"
DEFAULT_DATA_CONTENT_TYPE = "text/plain"
SPEC_VERSION = "1.0"


class CloudEventError(ValueError):
    """The app sent something that is not a CloudEvent in JSON structured mode."""


def is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _is_binary_type(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/octet-stream"


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def envelope(
    data: bytes, content_type: str | None, *, source: str, ttl_seconds: int | None = None
) -> dict[str, Any]:
    """A new CloudEvent around `data`: JSON data as JSON, binary as `data_base64`, other
    content types as text (Dapr's rules; JSON that does not parse is kept as text)."""
    content_type = content_type or DEFAULT_DATA_CONTENT_TYPE
    event: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": str(uuid.uuid4()),
        "source": source,
        "type": EVENT_TYPE,
        "datacontenttype": content_type,
    }
    if _is_binary_type(content_type):
        event["data_base64"] = base64.b64encode(data).decode()
    elif is_json_type(content_type):
        try:
            event["data"] = json.loads(data) if data else None
        except ValueError:
            event["data"] = data.decode("utf-8", "replace")
    else:
        event["data"] = data.decode("utf-8", "replace")
    _set_ttl(event, ttl_seconds)
    return event


def parse_app_event(body: bytes) -> dict[str, Any]:
    """A CloudEvent the app sent (`Content-Type: application/cloudevents+json`)."""
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise CloudEventError(f"the body is not valid JSON ({exc})") from None
    if not isinstance(event, dict):
        raise CloudEventError(f"a CloudEvent must be a JSON object, got {type(event).__name__}")
    version = event.get("specversion", SPEC_VERSION)
    if version != SPEC_VERSION:
        raise CloudEventError(f"specversion must be {SPEC_VERSION!r}, got {version!r}")
    for name in ("id", "source", "type", "datacontenttype", "subject"):
        if name in event and not isinstance(event[name], str):
            raise CloudEventError(f"field {name!r} must be a string, got {event[name]!r}")
    return event


def complete(event: dict[str, Any], *, source: str, ttl_seconds: int | None = None) -> dict[str, Any]:
    """Fill what an app-sent CloudEvent left out (as Dapr does)."""
    event.setdefault("specversion", SPEC_VERSION)
    event.setdefault("id", str(uuid.uuid4()))
    event.setdefault("source", source)
    event.setdefault("type", EVENT_TYPE)
    if "data" in event or "data_base64" in event:
        event.setdefault("datacontenttype", "application/json")
    _set_ttl(event, ttl_seconds)
    return event


def _set_ttl(event: dict[str, Any], ttl_seconds: int | None) -> None:
    if ttl_seconds is not None and ttl_seconds > 0:
        event["expiration"] = _timestamp(datetime.now(UTC) + timedelta(seconds=ttl_seconds))


def stamp(event: dict[str, Any], *, topic: str, pubsub: str, trace: Mapping[str, str]) -> bytes:
    """Set the routing and trace fields the sidecar owns, and serialize."""
    event["topic"] = topic
    event["pubsubname"] = pubsub
    event["time"] = event.get("time") or _timestamp(datetime.now(UTC))
    traceparent = trace.get("traceparent")
    if traceparent:
        event["traceparent"] = traceparent
        event["traceid"] = traceparent  # Dapr's older name for the same value
    tracestate = trace.get("tracestate")
    if tracestate:
        event["tracestate"] = tracestate
    return json.dumps(event, separators=(",", ":")).encode()


def read(data: bytes, *, topic: str, pubsub: str, raw: bool, message_id: str) -> dict[str, Any]:
    """The CloudEvent to deliver for stored bytes: the event itself, or (for payloads
    published raw, or a subscription asking for raw payloads) a new one carrying them
    as `data_base64`, as Dapr's `FromRawPayload` does."""
    if not raw:
        try:
            event = json.loads(data)
        except ValueError:
            event = None
        if isinstance(event, dict) and "specversion" in event:
            return event
    return {
        "specversion": SPEC_VERSION,
        "id": message_id or str(uuid.uuid4()),
        "source": pubsub,
        "type": EVENT_TYPE,
        "datacontenttype": "application/octet-stream",
        "data_base64": base64.b64encode(data).decode(),
        "topic": topic,
        "pubsubname": pubsub,
    }


def expired(event: Mapping[str, Any], now: datetime | None = None) -> bool:
    """Whether the event's `expiration` (set from `ttlInSeconds`) has passed."""
    value = event.get("expiration")
    if not isinstance(value, str):
        return False
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment <= (now or datetime.now(UTC))

"""Dapr's publish HTTP API: a payload (or the app's CloudEvent) in, a publish call out.

POST /v1.0/publish/{pubsub}/{topic}                  one message          -> 204
POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}      [{entryId, event, contentType, metadata}]
                                                     -> 204, or 500 {failedEntries, errorCode}

`?metadata.{name}=value` query parameters become the message metadata (`rawPayload`,
`ttlInSeconds`, or anything the broker takes); the request's Content-Type becomes the
CloudEvent's `datacontenttype`, and `application/cloudevents+json` bodies are the app's
own CloudEvent, completed and passed through. Bodies above the sidecar's
`--dapr-http-max-request-size` are refused with 413 before they are read whole.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from outrig.middleware import Call, CallError, Hop, Result, Stream

from ..blocks.cloudevents import CLOUDEVENT_CONTENT_TYPE, is_json_type
from ..blocks.pubsub import (
    Failure,
    PublishEntry,
    PublishRequest,
    app_cloudevent,
    check_entry_id,
    publish_entry,
)
from ..blocks.requests import FromBody
from .asgi import (
    Receive,
    Scope,
    Send,
    path_after,
    request_call,
    run_call,
    send_empty,
    send_json,
)

PUBLISH_PREFIX = b"/v1.0/publish/"
ALPHA_BULK_PREFIX = b"/v1.0-alpha1/publish/bulk/"
ROUTE_PUBLISH = "/v1.0/publish/{pubsubname}/{topic}"
ROUTE_BULK = "/v1.0-alpha1/publish/bulk/{pubsubname}/{topic}"
METADATA_PREFIX = "metadata."


def is_publish_path(raw: bytes) -> bool:
    return raw.startswith(PUBLISH_PREFIX) or raw.startswith(ALPHA_BULK_PREFIX)


def _malformed(message: str) -> CallError:
    return CallError("ERR_PUBSUB_EVENTS_SER", message, 400, reason="DAPR_PUBSUB_UNMARSHAL_EVENTS")


def _query_metadata(query: str) -> dict[str, str]:
    return {k[len(METADATA_PREFIX) :]: v for k, v in parse_qsl(query) if k.startswith(METADATA_PREFIX)}


async def read_capped(call: Call, limit: int, what: str) -> bytes:
    """The whole body, refusing (413) one above `limit` without reading it all."""
    if isinstance(call.body, bytes):
        body = call.body
    else:
        stream: Stream = call.body
        if stream.length is not None and stream.length > limit:
            raise _too_large(what, stream.length, limit)
        parts: list[bytes] = []
        size = 0
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                await stream.aclose()
                raise _too_large(what, size, limit)
            parts.append(chunk)
        body = b"".join(parts)
    if len(body) > limit:
        raise _too_large(what, len(body), limit)
    call.body = body
    return body


def _too_large(what: str, size: int, limit: int) -> CallError:
    return CallError(
        "ERR_PUBSUB_PUBLISH_MESSAGE",
        f"{what}: the body ({size} bytes or more) is above the limit of {limit} bytes; "
        "send less, or raise the sidecar's --dapr-http-max-request-size (in MB)",
        413,
    )


def _single(call: Call, body: bytes, metadata: Mapping[str, str]) -> PublishRequest:
    content_type = call.metadata.get("content-type") or ""
    return PublishRequest([publish_entry(body, content_type, metadata, "", "publish")])


def _bulk(call: Call, body: bytes, metadata: Mapping[str, str]) -> PublishRequest:
    try:
        items = json.loads(body)
    except ValueError as exc:
        raise _malformed(f"bulk publish: the body is not valid JSON ({exc})") from None
    if not isinstance(items, list):
        raise _malformed(
            "bulk publish: the body must be a JSON array of {entryId, event, contentType, metadata}"
        )
    entries: list[PublishEntry] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"bulk publish entries[{i}]"
        if not isinstance(item, dict):
            raise _malformed(f"{where}: expected an object, got {type(item).__name__}")
        entry_id = check_entry_id(item.get("entryId"), seen, where, "entryId")
        entries.append(_bulk_entry(item, entry_id, where, metadata))
    return PublishRequest(entries, bulk=True)


def _bulk_entry(item: dict[str, Any], entry_id: str, where: str, metadata: Mapping[str, str]) -> PublishEntry:
    if "event" not in item:
        raise _malformed(f"{where}: field event is missing")
    content_type = item.get("contentType") or ""
    if not isinstance(content_type, str):
        raise _malformed(f"{where}: contentType must be a string, got {content_type!r}")
    own = item.get("metadata") or {}
    if not isinstance(own, dict):
        raise _malformed(f"{where}: metadata must be an object of strings, got {own!r}")
    merged = {**metadata, **{str(k): str(v) for k, v in own.items()}}
    event = item["event"]
    if content_type.lower() == CLOUDEVENT_CONTENT_TYPE:
        if not isinstance(event, dict):
            raise CallError(
                "ERR_PUBSUB_CLOUD_EVENTS_SER",
                f"{where}: a CloudEvent entry needs an object event",
                400,
                reason="DAPR_PUBSUB_CLOUD_EVENT_CREATION",
            )
        parsed = app_cloudevent(json.dumps(event).encode(), where)
        return PublishEntry(b"", content_type, merged, entry_id, parsed)
    if isinstance(event, str) and not is_json_type(content_type or "text/plain"):
        data = event.encode()
    else:
        data = json.dumps(event).encode()
        content_type = content_type or "application/json"
    return PublishEntry(data, content_type, merged, entry_id)


class PubSubApi:
    def __init__(self, pipeline: Callable[[Call], Awaitable[Result]], max_body: int) -> None:
        self.pipeline = pipeline
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        bulk = raw.startswith(ALPHA_BULK_PREFIX)
        pubsub, topic = path_after(scope, ALPHA_BULK_PREFIX if bulk else PUBLISH_PREFIX)

        async def build() -> Call:
            if scope["method"] not in ("POST", "PUT"):
                raise CallError(
                    "ERR_METHOD_NOT_ALLOWED", f"{scope['method']} is not allowed; publish with POST", 405
                )
            if not pubsub:
                raise CallError("ERR_PUBSUB_EMPTY", "pubsub name is empty", 404)
            if not topic:
                raise CallError("ERR_TOPIC_EMPTY", f"topic is empty in pubsub {pubsub}", 404)
            call = await request_call(
                scope, receive, hop=Hop.APP_API, target=pubsub, subject=topic,
                route=ROUTE_BULK if bulk else ROUTE_PUBLISH, block="pubsub",
                operation="bulk_publish" if bulk else "publish",
            )  # fmt: skip
            await read_capped(call, self.max_body, "bulk publish" if bulk else "publish")
            metadata = _query_metadata(call.query)
            call.request = FromBody(partial(_bulk if bulk else _single, metadata=metadata))
            return call

        result = await run_call(self.pipeline, send, build)
        if result is None:
            return
        if result.status == 204:
            await send_empty(send, 204)
            return
        failures: list[Failure] = result.value
        await send_json(
            send,
            500,
            {
                "failedEntries": [{"entryId": f.entry_id, "error": f.error} for f in failures],
                "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
            },
        )

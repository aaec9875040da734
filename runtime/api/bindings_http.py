"""Dapr's output bindings HTTP API.

POST (or PUT) /v1.0/bindings/{name}  {"operation": ..., "data": ..., "metadata": {...}}
  -> 200 with the binding's data as the body and its metadata as `metadata.<key>` headers,
     or 204 when the binding answers no data.
`data` that is a JSON string is passed as its text; any other JSON value as its JSON.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from outrig.middleware import Call, CallError, Hop, Result

from ..blocks.bindings import OutputRequest
from ..blocks.requests import FromBody
from ..components.bindings import BindingResponse
from .asgi import Receive, Scope, Send, path_after, request_call, run_call

BINDINGS_PREFIX = b"/v1.0/bindings/"
ROUTE_BINDING = "/v1.0/bindings/{name}"


def is_bindings_path(raw: bytes) -> bool:
    return raw.startswith(BINDINGS_PREFIX)


def _bad(message: str) -> CallError:
    return CallError("ERR_MALFORMED_REQUEST", f"output binding request: {message}", 400)


def parse_request(body: bytes) -> OutputRequest:
    try:
        doc: Any = json.loads(body) if body.strip() else {}
    except ValueError as exc:
        raise _bad(f"the body is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _bad('expected {"operation": ..., "data": ..., "metadata": {...}}')
    operation = doc.get("operation")
    if not isinstance(operation, str) or not operation:
        raise _bad("field operation is missing or not a non-empty string")
    metadata = doc.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _bad(f"field metadata must be an object of strings, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(value, str):
            kind = {bool: "a boolean", int: "a number", float: "a number", type(None): "null"}
            got = kind.get(type(value), "an object" if isinstance(value, dict) else "an array")
            raise _bad(f'metadata.{key} must be a string (as Dapr), got {got}; quote it, e.g. "true"')
    data = doc.get("data")
    if data is None:
        raw = b""
    elif isinstance(data, str):
        raw = data.encode()
    else:
        raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return OutputRequest(operation, raw, dict(metadata))


class BindingsApi:
    def __init__(self, pipeline: Callable[[Call], Awaitable[Result]]) -> None:
        self.pipeline = pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name, rest = path_after(scope, BINDINGS_PREFIX)

        async def make() -> Call:
            if scope["method"] not in ("POST", "PUT"):
                raise CallError("ERR_METHOD_NOT_ALLOWED", f"{scope['method']} is not allowed; use POST", 405)
            if not name or rest:
                raise CallError("ERR_MALFORMED_REQUEST", "expected /v1.0/bindings/{name}", 400)
            call = await request_call(
                scope, receive, hop=Hop.APP_API, target=name, subject="", route=ROUTE_BINDING,
                block="bindings", operation="invoke",
            )  # fmt: skip
            await call.read()
            call.request = FromBody(lambda call, body: parse_request(body))
            return call

        result = await run_call(self.pipeline, send, make)
        if result is None:
            return
        response: BindingResponse = result.value
        headers = [
            (f"metadata.{k}".encode("latin-1", "replace"), str(v).encode("latin-1", "replace"))
            for k, v in response.metadata.items()
        ]
        if not response.data:
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", str(len(response.data)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": response.data})

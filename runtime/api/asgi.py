"""Raw ASGI plumbing shared by the app API and the peer API: scope -> Call, Result -> send.

The invoke path stays on raw ASGI (no framework routing): it is the hot path, and
Starlette's routing alone halves raw-ASGI throughput (measured, see design notes).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from multidict import CIMultiDict

from outrig.middleware import Call, CallError, Hop, Result, Stream, iterate

from ..blocks.invoke import INVOKE_ROUTE
from ..transport import BUFFER_LIMIT, HOP_BY_HOP

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HOP_BY_HOP_BYTES = frozenset(h.encode() for h in HOP_BY_HOP)
JSON_HEADERS = [(b"content-type", b"application/json")]


class ClientDisconnectedError(Exception):
    """The caller went away while its request body was still being read."""


async def request_call(
    scope: Scope,
    receive: Receive,
    *,
    hop: Hop,
    target: str,
    subject: str,
    route: str,
) -> Call:
    """Build the Call for an HTTP request; the body is read whole only when it is small."""
    metadata: CIMultiDict[str] = CIMultiDict()
    length: int | None = None
    chunked = False
    host = ""
    for key, value in scope["headers"]:
        if key == b"content-length":
            length = int(value)
        elif key == b"transfer-encoding":
            chunked = True
        elif key == b"host":
            host = value.decode("latin-1")
        if key not in _HOP_BY_HOP_BYTES:
            metadata.add(key.decode("latin-1"), value.decode("latin-1"))
    body: bytes | Stream
    if length is not None and length <= BUFFER_LIMIT:
        body = b"".join([chunk async for chunk in _receive_chunks(receive)])
    elif length is None and not chunked:
        body = b""
    else:
        body = Stream(_receive_chunks(receive), length)
    query = scope.get("query_string", b"").decode("latin-1")
    attributes: dict[str, Any] = {
        "http.route": route,
        "url.path": scope.get("raw_path", b"").decode("latin-1") or scope["path"],
        "url.scheme": scope.get("scheme", "http"),
    }
    if query:
        attributes["url.query"] = query
    server = scope.get("server")
    if server:
        attributes["server.address"] = host.rsplit(":", 1)[0] if host else server[0]
        attributes["server.port"] = server[1]
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    return Call(
        block="invoke",
        operation="invoke",
        target=target,
        subject=subject,
        hop=hop,
        route=route,
        metadata=metadata,
        body=body,
        verb=scope["method"],
        query=query,
        attributes=attributes,
    )


async def _receive_chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def serve_invoke(
    pipeline: Callable[[Call], Awaitable[Result]],
    scope: Scope,
    receive: Receive,
    send: Send,
    hop: Hop,
    locate: Callable[[], tuple[str, str]],
    prepare: Callable[[Call], None],
) -> None:
    """One invocation over HTTP: locate (app id, method), build the Call, run, answer.

    `locate` may raise a CallError (a malformed path), answered in Dapr's error shape;
    `prepare` adjusts the call for its entry point before the pipeline sees it.
    """
    try:
        target, method = locate()
        call = await request_call(scope, receive, hop=hop, target=target, subject=method, route=INVOKE_ROUTE)
    except CallError as error:
        await send_error(send, error)
        return
    except ClientDisconnectedError:
        return
    prepare(call)
    result = await pipeline(call)
    await send_result(send, result, call.verb)


async def send_result(send: Send, result: Result, verb: str) -> None:
    """Write a Result as an HTTP response; errors become Dapr's JSON error body."""
    if result.error is not None:
        await send_error(send, result.error)
        return
    headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in result.headers.items()
        if k.lower() != "content-length"
    ]
    body = result.body
    if isinstance(body, bytes):
        declared = result.headers.get("content-length") if verb == "HEAD" else None
        headers.append((b"content-length", (declared or str(len(body))).encode()))
        await send({"type": "http.response.start", "status": result.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if body.length is not None:
        headers.append((b"content-length", str(body.length).encode()))
    await send({"type": "http.response.start", "status": result.status, "headers": headers})
    async for chunk in iterate(body):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def send_error(send: Send, error: CallError) -> None:
    await send_json(send, error.status, error.to_json())


async def send_json(send: Send, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

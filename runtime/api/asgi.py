"""Raw ASGI plumbing shared by the app API and the peer API: scope -> Call, Result -> send.

The invoke path stays on raw ASGI (no framework routing): it is the hot path, and
Starlette's routing alone halves raw-ASGI throughput (measured, see design notes).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

from multidict import CIMultiDict

from outrig.middleware import Call, CallError, Hop, Result, Stream

from ..blocks.invoke import INVOKE_ROUTE
from ..transport import BUFFER_LIMIT, HEADER_CODEC, HOP_BY_HOP, bodiless, connection_tokens

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
    block: str = "invoke",
    operation: str = "invoke",
) -> Call:
    """Build the Call for an HTTP request; the body is read whole only when it is small."""
    metadata: CIMultiDict[str] = CIMultiDict()
    length: int | None = None
    chunked = False
    host = ""
    hop_only: set[str] = set()
    for key, value in scope["headers"]:
        if key == b"content-length":
            length = int(value)
        elif key == b"transfer-encoding":
            chunked = True
        elif key == b"host":
            host = value.decode("latin-1")
        elif key == b"connection":
            hop_only = connection_tokens(value.decode("latin-1"))
        if key not in _HOP_BY_HOP_BYTES:
            metadata.add(key.decode(*HEADER_CODEC), value.decode(*HEADER_CODEC))
    for name in hop_only:
        metadata.popall(name, None)
    body: bytes | Stream
    if length is not None and length <= BUFFER_LIMIT:
        body = b"".join([chunk async for chunk in _receive_chunks(scope, receive)])
    elif length is None and not chunked:
        body = b""
        scope[BODY_READ] = True
    else:
        body = Stream(_receive_chunks(scope, receive), length)
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
        block=block,
        operation=operation,
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


BODY_READ = "outrig.body_read"
"""Set in the ASGI scope once the request body has been read to its end: from then on,
the only thing `receive()` can bring is the client's disconnect."""


async def _receive_chunks(scope: Scope, receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            scope[BODY_READ] = True
            return


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


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
    await send_result(send, result, call.verb, scope, receive)


async def send_result(send: Send, result: Result, verb: str, scope: Scope, receive: Receive) -> None:
    """Write a Result as an HTTP response; errors become Dapr's JSON error body."""
    if result.error is not None:
        await send_error(send, result.error, result.headers)
        return
    headers = [
        (k.lower().encode(*HEADER_CODEC), v.encode(*HEADER_CODEC))
        for k, v in result.headers.items()
        if k.lower() != "content-length"
    ]
    body = result.body
    if isinstance(body, bytes):
        if not bodiless(verb, result.status):
            headers.append((b"content-length", str(len(body)).encode()))
        elif (declared := result.headers.get("content-length")) is not None:
            headers.append((b"content-length", declared.encode()))
        await send({"type": "http.response.start", "status": result.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if body.length is not None:
        headers.append((b"content-length", str(body.length).encode()))
    await send({"type": "http.response.start", "status": result.status, "headers": headers})
    await _send_stream(send, body, scope, receive)


async def _send_stream(send: Send, body: Stream, scope: Scope, receive: Receive) -> None:
    """Relay a streamed body, stopping (and closing the upstream) if the client goes away.

    uvicorn drops writes to a closed connection silently, so without watching for the
    disconnect the sidecar would keep pulling an endless upstream for nobody.
    """
    gone = asyncio.ensure_future(_until_disconnect(receive)) if scope.get(BODY_READ) else None
    try:
        async for chunk in body:
            if gone is not None and gone.done():
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        if gone is not None:
            gone.cancel()
        await body.aclose()


def path_after(scope: Scope, prefix: bytes) -> tuple[str, str]:
    """The path's first segment after `prefix`, and the rest, percent-decoded."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    first, _, rest = raw[len(prefix) :].decode("latin-1").partition("/")
    return unquote(first), unquote(rest)


async def run_call(
    pipeline: Callable[[Call], Awaitable[Result]], send: Send, build: Callable[[], Awaitable[Call]]
) -> Result | None:
    """Build a call (a malformed request is answered at once), run it through the pipeline;
    the result to render, or None when the answer (an error) has been sent already."""
    try:
        call = await build()
    except CallError as error:
        await send_error(send, error)
        return None
    except ClientDisconnectedError:
        return None
    result = await pipeline(call)
    if result.error is not None:
        await send_error(send, result.error, result.headers)
        return None
    return result


async def send_error(send: Send, error: CallError, headers: CIMultiDict[str] | None = None) -> None:
    """Dapr's JSON error body; `headers` (a Result's: `Retry-After`, `RateLimit-*`) go along."""
    extra = [(k.lower().encode(*HEADER_CODEC), v.encode(*HEADER_CODEC)) for k, v in (headers or {}).items()]
    await send_json(send, error.status, error.to_json(), extra)


async def send_empty(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def send_json(
    send: Send, status: int, payload: object, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload).encode()
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if extra:
        headers += [h for h in extra if h[0] not in (b"content-type", b"content-length")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

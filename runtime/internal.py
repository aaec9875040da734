"""The peer API: invocations arriving from other sidecars, run through our inbound pipeline."""

from __future__ import annotations

from outrig.middleware import CallError, Hop, Pipeline

from .api.asgi import ClientDisconnectedError, Receive, Scope, Send, request_call, send_error, send_result
from .api.invoke_path import INVOKE_PREFIX, parse_invoke_path
from .blocks.invoke import CALLER_HEADER, INVOKE_ROUTE


class PeerApi:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        try:
            if not path.startswith(INVOKE_PREFIX):
                raise CallError("ERR_NOT_FOUND", f"no peer route for {path}", 404)
            target, method = parse_invoke_path(scope.get("raw_path") or path.encode())
            call = await request_call(
                scope, receive, hop=Hop.PEER, target=target, subject=method, route=INVOKE_ROUTE
            )
        except CallError as error:
            await send_error(send, error)
            return
        except ClientDisconnectedError:
            return
        call.caller = call.metadata.get(CALLER_HEADER)
        result = await self.pipeline(call)
        await send_result(send, result, call.verb)

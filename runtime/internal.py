"""The peer API: invocations arriving from other sidecars, run through our inbound pipeline."""

from __future__ import annotations

from functools import partial

from outrig.middleware import Call, CallError, Hop, Pipeline

from .api.asgi import Receive, Scope, Send, send_error, serve_invoke
from .api.invoke_path import INVOKE_PREFIX, parse_invoke_path
from .blocks.invoke import CALLER_HEADER


class PeerApi:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        if not raw.startswith(INVOKE_PREFIX):
            await send_error(send, CallError("ERR_NOT_FOUND", f"no peer route for {scope['path']}", 404))
            return
        locate = partial(parse_invoke_path, raw)
        await serve_invoke(self.pipeline, scope, receive, send, Hop.PEER, locate, _note_caller)


def _note_caller(call: Call) -> None:
    call.caller = call.metadata.get(CALLER_HEADER)

"""The peer API: invocations arriving from other sidecars, run through our inbound pipeline.

With mTLS on, the caller is who its certificate says (verified once per connection, see
`security.peers`): `call.identity` is its SPIFFE ID, `call.caller` its app id, whatever the
`dapr-caller-app-id` header claims, and the app behind us is told both in headers.
"""

from __future__ import annotations

from functools import partial

from outrig.middleware import Call, CallError, Hop, Pipeline

from .api.asgi import Receive, Scope, Send, send_error, serve_invoke
from .api.invoke_path import INVOKE_PREFIX, parse_invoke_path
from .blocks.invoke import CALLER_HEADER, PEER_IDENTITY_HEADER
from .security.peers import PEER_IDENTITY
from .security.spiffe import SpiffeId

IDENTITY_HEADER = PEER_IDENTITY_HEADER
"""Sent to the app with each invocation from a peer verified by mTLS: the caller's SPIFFE
ID. Set by the callee's sidecar only (removed from what any caller sends)."""
_LOOKALIKES = (IDENTITY_HEADER.replace("-", "_"), CALLER_HEADER.replace("-", "_"))
"""`_` spellings some app servers (CGI, WSGI) read as the real headers: never passed on."""
ATTR_PEER_IDENTITY = "outrig.peer.identity"
"""The caller's SPIFFE ID, on the server span of a peer call verified by mTLS."""


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
        identity: SpiffeId | None = scope.get(PEER_IDENTITY)
        prepare = _note_caller if identity is None else partial(_note_identity, identity)
        await serve_invoke(self.pipeline, scope, receive, send, Hop.PEER, locate, prepare)


def _note_caller(call: Call) -> None:
    for header in (IDENTITY_HEADER, *_LOOKALIKES):
        call.metadata.popall(header, None)
    call.caller = call.metadata.get(CALLER_HEADER)


def _note_identity(identity: SpiffeId, call: Call) -> None:
    for header in _LOOKALIKES:
        call.metadata.popall(header, None)
    spiffe_id = str(identity)
    call.identity = spiffe_id
    call.caller = identity.app_id
    call.metadata[CALLER_HEADER] = identity.app_id
    call.metadata[IDENTITY_HEADER] = spiffe_id
    call.attributes[ATTR_PEER_IDENTITY] = spiffe_id

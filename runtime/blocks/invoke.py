"""Service invocation: route a call to the target app's sidecar, or into our own app."""

from __future__ import annotations

from opentelemetry import trace

from outrig.middleware import Call, CallError, Hop, Pipeline, Result

from ..nameresolution import NameResolver
from ..transport import ConnectFailedError, HttpTransport

INVOKE_ROUTE = "/v1.0/invoke/{appId}/method/{method}"
CALLER_HEADER = "dapr-caller-app-id"
CALLEE_HEADER = "dapr-callee-app-id"
API_TOKEN_HEADER = "dapr-api-token"
PEER_IDENTITY_HEADER = "outrig-caller-identity"
"""The verified caller's SPIFFE ID, set by the callee's sidecar (mTLS) for its app."""
_SET_BY_SIDECARS = (CALLER_HEADER, CALLEE_HEADER, API_TOKEN_HEADER, PEER_IDENTITY_HEADER)
IDENTITY_HEADERS = (*_SET_BY_SIDECARS, *(name.replace("-", "_") for name in _SET_BY_SIDECARS))
"""Set by sidecars only; stripped from what apps send, so an app cannot pose as another
(and its `DAPR_API_TOKEN` never travels on to another app). The `_` spellings go too: CGI,
WSGI and some proxies read `dapr_caller_app_id` as `dapr-caller-app-id`."""


def invoke_path(app_id: str, method: str) -> str:
    return f"/v1.0/invoke/{app_id}/method/{method}"


def _failure(app_id: str) -> str:
    return f"failed to invoke, id: {app_id}, err"


class InvokeBlock:
    """The endpoint of inbound pipelines for `invoke` calls.

    A call for our own app id goes through the app-channel pipeline; any other goes
    through the peer pipeline to the target's sidecar. A call that reached us from a peer
    but names another app is refused, so no call loops between sidecars.
    """

    def __init__(self, app_id: str, peer: Pipeline, app: Pipeline) -> None:
        self.app_id = app_id
        self.peer = peer
        self.app = app

    async def __call__(self, call: Call) -> Result:
        if call.target == self.app_id:
            call = _next_hop(call, Hop.APP_CHANNEL, "", {})
            call.metadata[CALLEE_HEADER] = self.app_id
            if call.caller is None:
                call.metadata[CALLER_HEADER] = self.app_id
            return await self.app(call)
        if call.hop is Hop.PEER:
            raise CallError(
                "ERR_DIRECT_INVOKE",
                f"{_failure(call.target)}: this sidecar serves {self.app_id!r}, not {call.target!r}",
                500,
            )
        call = _next_hop(call, Hop.PEER, INVOKE_ROUTE, {"url.template": INVOKE_ROUTE})
        call.metadata[CALLER_HEADER] = self.app_id
        return await self.peer(call)


def _next_hop(call: Call, hop: Hop, route: str, attributes: dict[str, object]) -> Call:
    """The same call for the next hop: same payload and metadata, its own span attributes."""
    return Call(
        block=call.block, operation=call.operation, target=call.target, subject=call.subject, hop=hop,
        route=route, metadata=call.metadata, body=call.body, verb=call.verb, query=call.query,
        caller=call.caller, attributes=attributes,
    )  # fmt: skip


class PeerChannel:
    """Sends an invocation to the sidecar of its target app, found by name resolution."""

    def __init__(self, resolver: NameResolver, transport: HttpTransport) -> None:
        self.resolver = resolver
        self.transport = transport

    async def __call__(self, call: Call) -> Result:
        try:
            return await self._send(call)
        except ConnectFailedError:
            # Nothing was sent: the entry was stale (a sidecar that just died). Rescan
            # and try once more, on another instance or with "couldn't find service".
            self.resolver.forget(call.target)
            return await self._send(call)

    async def _send(self, call: Call) -> Result:
        address = self.resolver.resolve(call.target)
        if address is None:
            raise CallError(
                "ERR_DIRECT_INVOKE",
                f"{_failure(call.target)}: couldn't find service: {call.target} "
                "(no sidecar with this app id is running on this machine)",
                500,
            )
        path = invoke_path(call.target, call.subject)
        _record_peer(address.host, address.port, path)
        failure = f"{_failure(call.target)}: sidecar of {call.target} at {address.host}:{address.port}"
        try:
            return await self.transport.send(address.host, address.port, path, call, failure)
        except CallError:
            self.resolver.forget(call.target)
            raise


class AppChannel:
    """Delivers an invocation to our own app over HTTP."""

    def __init__(
        self, app_id: str, host: str, port: int | None, transport: HttpTransport, token: str | None = None
    ) -> None:
        self.app_id = app_id
        self.host = host
        self.port = port
        self.transport = transport
        self.token = token
        """`APP_API_TOKEN`: sent to the app as `dapr-api-token` on every call."""

    async def __call__(self, call: Call) -> Result:
        if self.port is None:
            raise CallError(
                "ERR_DIRECT_INVOKE",
                f"{_failure(self.app_id)}: app {self.app_id} has no app port "
                "(start its sidecar with --app-port)",
                500,
            )
        path = "/" + call.subject
        if self.token is not None:
            call.metadata[API_TOKEN_HEADER] = self.token
        _record_peer(self.host, self.port, path)
        return await self.transport.send(
            self.host,
            self.port,
            path,
            call,
            f"{_failure(self.app_id)}: app {self.app_id} at {self.host}:{self.port}",
        )


def _record_peer(host: str, port: int, path: str) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(
            {"server.address": host, "server.port": port, "url.full": f"http://{host}:{port}{path}"}
        )

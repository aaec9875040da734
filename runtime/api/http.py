"""Dapr's HTTP API v1.0 for the app: invocation on a raw-ASGI fast path, the rest routed.

`/v1.0/invoke/...` and requests carrying a `dapr-app-id` header become invoke Calls run
through the inbound pipeline; every other route is served by a Starlette router.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from outrig.middleware import Call, CallError, Hop, Pipeline

from ..blocks.invoke import API_TOKEN_HEADER, IDENTITY_HEADERS
from .asgi import Receive, Scope, Send, send_error, serve_invoke
from .bindings_http import BindingsApi, is_bindings_path
from .configuration_http import ConfigurationApi, is_configuration_path
from .invoke_path import INVOKE_PREFIX, parse_invoke_path
from .lock_http import LockApi, is_lock_path
from .pubsub_http import PubSubApi, is_publish_path
from .secrets_http import SecretsApi, is_secrets_path
from .state_http import ALPHA_STATE_PREFIX, STATE_PREFIX, StateApi

APP_ID_HEADER = b"dapr-app-id"
ANY_VERB = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
"""Control routes take every verb and answer the wrong ones with Dapr's error shape."""


class SidecarView(Protocol):
    """What the control routes need from the sidecar."""

    @property
    def app_ready(self) -> bool: ...

    @property
    def outbound_ready(self) -> bool: ...

    @property
    def max_request_bytes(self) -> int: ...

    @property
    def api_token(self) -> str | None: ...

    def metadata(self) -> dict[str, Any]: ...

    def request_shutdown(self) -> None: ...


class AppApi:
    def __init__(self, pipeline: Pipeline, sidecar: SidecarView) -> None:
        self.pipeline = pipeline
        self.state = StateApi(pipeline)
        self.pubsub = PubSubApi(pipeline, sidecar.max_request_bytes)
        self.secrets = SecretsApi(pipeline)
        self.bindings = BindingsApi(pipeline)
        self.configuration = ConfigurationApi(pipeline)
        self.lock = LockApi(pipeline)
        self.router = control_routes(sidecar)
        self.token = sidecar.api_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is not None and not _token_ok(scope, self.token):
            await send_error(send, CallError("ERR_API_TOKEN", "invalid api token", 401))
            return
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        locate: Callable[[], tuple[str, str]]
        if raw.startswith(INVOKE_PREFIX):
            locate = partial(parse_invoke_path, raw)
        elif raw.startswith(STATE_PREFIX) or raw.startswith(ALPHA_STATE_PREFIX):
            await self.state(scope, receive, send)
            return
        elif is_publish_path(raw):
            await self.pubsub(scope, receive, send)
            return
        elif is_secrets_path(raw):
            await self.secrets(scope, receive, send)
            return
        elif is_bindings_path(raw):
            await self.bindings(scope, receive, send)
            return
        elif is_configuration_path(raw):
            await self.configuration(scope, receive, send)
            return
        elif is_lock_path(raw):
            await self.lock(scope, receive, send)
            return
        else:
            header = next((v for k, v in scope["headers"] if k == APP_ID_HEADER), None)
            if header is None:
                await self.router(scope, receive, send)
                return
            app_id = header.decode("latin-1")

            def locate() -> tuple[str, str]:
                return app_id, raw.decode("latin-1")[1:]

        await serve_invoke(self.pipeline, scope, receive, send, Hop.APP_API, locate, _strip_identity)


def _token_ok(scope: Scope, token: str) -> bool:
    """Dapr's `DAPR_API_TOKEN` check: the `dapr-api-token` header must match (health exempt)."""
    if str(scope.get("path", "")).rstrip("/") in HEALTH_PATHS:  # `/v1.0/healthz/` too
        return True
    sent = next((v for k, v in scope.get("headers", ()) if k == API_TOKEN_HEADER_BYTES), None)
    return sent is not None and hmac.compare_digest(sent, token.encode())


HEALTH_PATHS = frozenset({"/v1.0/healthz", "/v1.0/healthz/outbound"})
API_TOKEN_HEADER_BYTES = API_TOKEN_HEADER.encode()


def _strip_identity(call: Call) -> None:
    for header in IDENTITY_HEADERS:
        call.metadata.popall(header, None)


def control_routes(sidecar: SidecarView) -> Router:
    async def healthz(request: Request) -> Response:
        if sidecar.app_ready:
            return Response(status_code=204)
        return _error(CallError("ERR_HEALTH_NOT_READY", "dapr is not ready: app channel not ready", 500))

    async def healthz_outbound(request: Request) -> Response:
        if sidecar.outbound_ready:
            return Response(status_code=204)
        return _error(CallError("ERR_HEALTH_NOT_READY", "dapr is not ready: outbound not ready", 500))

    async def metadata(request: Request) -> Response:
        return JSONResponse(sidecar.metadata())

    async def shutdown(request: Request) -> Response:
        sidecar.request_shutdown()
        return Response(status_code=204)

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        await send_error(
            send, CallError("ERR_NOT_FOUND", f"no API route for {scope['method']} {scope['path']}", 404)
        )

    routes: list[Route] = [
        Route("/v1.0/healthz", _only("GET", healthz), methods=ANY_VERB),
        Route("/v1.0/healthz/outbound", _only("GET", healthz_outbound), methods=ANY_VERB),
        Route("/v1.0/metadata", _only("GET", metadata), methods=ANY_VERB),
        Route("/v1.0/shutdown", _only("POST", shutdown), methods=ANY_VERB),
    ]
    default: Callable[[Scope, Receive, Send], Awaitable[None]] = not_found
    return Router(routes=routes, default=default)


Endpoint = Callable[[Request], Awaitable[Response]]


def _only(verb: str, endpoint: Endpoint) -> Endpoint:
    """Answer other verbs with 405 in Dapr's error shape (Starlette's own is plain text)."""
    allowed = {verb, "HEAD"} if verb == "GET" else {verb}

    async def checked(request: Request) -> Response:
        if request.method not in allowed:
            error = CallError(
                "ERR_METHOD_NOT_ALLOWED",
                f"{request.method} is not allowed on {request.url.path}; use {verb}",
                405,
            )
            return JSONResponse(
                error.to_json(), status_code=405, headers={"allow": ", ".join(sorted(allowed))}
            )
        return await endpoint(request)

    return checked


def _error(error: CallError) -> Response:
    return JSONResponse(error.to_json(), status_code=error.status)

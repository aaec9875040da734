"""Dapr's HTTP API v1.0 for the app: invocation on a raw-ASGI fast path, the rest routed.

`/v1.0/invoke/...` and requests carrying a `dapr-app-id` header become invoke Calls run
through the inbound pipeline; every other route is served by a Starlette router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from outrig.middleware import Call, CallError, Hop, Pipeline

from ..blocks.invoke import IDENTITY_HEADERS
from .asgi import Receive, Scope, Send, send_error, serve_invoke
from .invoke_path import INVOKE_PREFIX, parse_invoke_path

APP_ID_HEADER = b"dapr-app-id"


class SidecarView(Protocol):
    """What the control routes need from the sidecar."""

    @property
    def app_ready(self) -> bool: ...

    @property
    def outbound_ready(self) -> bool: ...

    def metadata(self) -> dict[str, Any]: ...

    def request_shutdown(self) -> None: ...


class AppApi:
    def __init__(self, pipeline: Pipeline, sidecar: SidecarView) -> None:
        self.pipeline = pipeline
        self.router = control_routes(sidecar)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        path: str = scope["path"]
        raw: bytes = scope.get("raw_path") or path.encode()
        locate: Callable[[], tuple[str, str]]
        if path.startswith(INVOKE_PREFIX):
            locate = partial(parse_invoke_path, raw)
        else:
            header = next((v for k, v in scope["headers"] if k == APP_ID_HEADER), None)
            if header is None:
                await self.router(scope, receive, send)
                return
            app_id = header.decode("latin-1")

            def locate() -> tuple[str, str]:
                return app_id, raw.decode("latin-1")[1:]

        await serve_invoke(self.pipeline, scope, receive, send, Hop.APP_API, locate, _strip_identity)


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
        Route("/v1.0/healthz", healthz, methods=["GET"]),
        Route("/v1.0/healthz/outbound", healthz_outbound, methods=["GET"]),
        Route("/v1.0/metadata", metadata, methods=["GET"]),
        Route("/v1.0/shutdown", shutdown, methods=["POST"]),
    ]
    default: Callable[[Scope, Receive, Send], Awaitable[None]] = not_found
    return Router(routes=routes, default=default)


def _error(error: CallError) -> Response:
    return JSONResponse(error.to_json(), status_code=error.status)

"""Dapr's HTTP API v1.0 for the app: invocation on a raw-ASGI fast path, the rest routed.

`/v1.0/invoke/...` and requests carrying a `dapr-app-id` header become invoke Calls run
through the inbound pipeline; every other route is served by a Starlette router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from outrig.middleware import CallError, Hop, Pipeline

from ..blocks.invoke import IDENTITY_HEADERS, INVOKE_ROUTE
from .asgi import ClientDisconnectedError, Receive, Scope, Send, request_call, send_error, send_result
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
        try:
            if path.startswith(INVOKE_PREFIX):
                target, method = parse_invoke_path(scope.get("raw_path") or path.encode())
            else:
                header = next((v for k, v in scope["headers"] if k == APP_ID_HEADER), None)
                if header is None:
                    await self.router(scope, receive, send)
                    return
                raw = scope.get("raw_path") or path.encode()
                target, method = header.decode("latin-1"), raw.decode("latin-1")[1:]
            call = await request_call(
                scope, receive, hop=Hop.APP_API, target=target, subject=method, route=INVOKE_ROUTE
            )
        except CallError as error:
            await send_error(send, error)
            return
        except ClientDisconnectedError:
            return
        for header in IDENTITY_HEADERS:
            call.metadata.popall(header, None)
        result = await self.pipeline(call)
        await send_result(send, result, call.verb)


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

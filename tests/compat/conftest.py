"""The official Dapr Python SDK pointed at real outrig sidecars."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator

import pytest
from dapr.conf import settings

from tests.support import Sidecar


@pytest.fixture
def point_sdk(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Point the SDK's settings at a sidecar (its HTTP port for the health wait and HTTP
    invocation); the gRPC address to give `DaprClient`. Restored after the test."""

    def point(sidecar: Sidecar, invoke_protocol: str = "http", token: str | None = None) -> str:
        monkeypatch.setattr(settings, "DAPR_HTTP_PORT", sidecar.http_port)
        monkeypatch.setattr(settings, "DAPR_GRPC_PORT", sidecar.grpc_port)
        monkeypatch.setattr(settings, "DAPR_API_METHOD_INVOCATION_PROTOCOL", invoke_protocol)
        monkeypatch.setattr(settings, "DAPR_API_TOKEN", token)
        monkeypatch.setattr(settings, "DAPR_HEALTH_TIMEOUT", 10)
        return f"127.0.0.1:{sidecar.grpc_port}"

    return point


@pytest.fixture(autouse=True)
def close_sdk_event_loops(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The sync `DaprClient` invokes over HTTP on a new event loop per call and never closes
    it (dapr 1.18.3, `DaprInvocationHttpClient.invoke_method`); close those after the test,
    or their garbage collection fails a later test with a ResourceWarning."""
    made: list[asyncio.AbstractEventLoop] = []
    original = asyncio.new_event_loop

    def tracked() -> asyncio.AbstractEventLoop:
        loop = original()
        if str(sys._getframe(1).f_globals.get("__name__", "")).startswith("dapr."):
            made.append(loop)
        return loop

    monkeypatch.setattr(asyncio, "new_event_loop", tracked)
    yield
    for loop in made:
        if not loop.is_running() and not loop.is_closed():
            loop.close()
    if made:
        asyncio.set_event_loop(None)

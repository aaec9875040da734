"""Running one RPC's Call through the inbound pipeline, with gRPC's view of it on the span."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from multidict import CIMultiDict

from outrig.middleware import Call, Hop, Result

from .errors import abort
from .wire import incoming

SERVICE = "dapr.proto.runtime.v1.Dapr"
Context = grpc.aio.ServicerContext[Any, Any]
Pipeline = Callable[[Call], Awaitable[Result]]


def rpc_call(
    context: Context,
    rpc: str,
    *,
    block: str,
    operation: str,
    target: str,
    subject: str,
    route: str,
    verb: str,
    request: Any = None,
    body: bytes = b"",
    metadata: CIMultiDict[str] | None = None,
) -> Call:
    """The Call an RPC stands for: the same block, operation, target and route template as
    the HTTP request that asks the same thing, so middleware and metrics see one shape."""
    attributes: dict[str, Any] = {
        "http.route": route,
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": rpc,
    }
    peer = context.peer() or ""
    if peer.startswith("ipv4:") or peer.startswith("ipv6:"):
        attributes["client.address"] = peer.split(":", 1)[1].rsplit(":", 1)[0].strip("[]")
    return Call(
        block=block,
        operation=operation,
        target=target,
        subject=subject,
        hop=Hop.APP_API,
        route=route,
        metadata=metadata if metadata is not None else incoming(context.invocation_metadata()),
        body=body,
        verb=verb,
        request=request,
        attributes=attributes,
    )


async def run(pipeline: Pipeline, call: Call, context: Context) -> Result:
    """The call's result; an error ends the RPC with its gRPC status and rich details."""
    result = await pipeline(call)
    if result.error is not None:
        await abort(context, result.error.located(call.block, call.target))
    return result

"""Dapr's gRPC API (`dapr.proto.runtime.v1.Dapr`) on `--dapr-grpc-port`, on grpc.aio.

Every RPC of the service, as the `dapr` wheel's descriptors list it, gets a handler: the
ones outrig implements build a Call and run it through the same inbound pipeline as the
HTTP API; every other one answers UNIMPLEMENTED naming the RPC at once (unary or
streaming alike), so no client waits on an RPC nobody serves. With `DAPR_API_TOKEN` set,
each RPC first checks the `dapr-api-token` metadata (UNAUTHENTICATED otherwise).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from dapr.proto.runtime.v1 import dapr_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from outrig.middleware import CallError

from ...servers import StartupError
from .blocks import BlockRpcs
from .calls import SERVICE, Context, Pipeline
from .configuration import ConfigurationRpcs
from .control import ControlRpcs, ControlView
from .errors import abort
from .invoke import InvokeRpcs
from .pubsub import PubSubRpcs
from .state import StateRpcs
from .streaming import StreamHost, StreamingRpcs, StreamRpc
from .wire import API_TOKEN

log = logging.getLogger("outrig.grpc")

Unary = Callable[[Any, Context], Awaitable[Any]]
MISSING_TOKEN = "missing api token in request metadata"
WRONG_TOKEN = "authentication error: api token mismatch"


def implemented(pipeline: Pipeline, sidecar: ControlView) -> dict[str, Unary]:
    """The RPCs outrig serves, by name."""
    return {
        **InvokeRpcs(pipeline).rpcs(),
        **StateRpcs(pipeline).rpcs(),
        **PubSubRpcs(pipeline).rpcs(),
        **BlockRpcs(pipeline).rpcs(),
        **ConfigurationRpcs(pipeline).rpcs(),
        **ControlRpcs(sidecar).rpcs(),
    }


def check_token(expected: str | None, context: Context) -> CallError | None:
    """Dapr's API token check: None when the call may go on."""
    if not expected:
        return None
    sent = next((v for k, v in context.invocation_metadata() or () if k == API_TOKEN), None)
    if sent is None:
        return CallError("ERR_API_TOKEN", MISSING_TOKEN, 401)
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        return CallError("ERR_API_TOKEN", WRONG_TOKEN, 401)
    return None


def _unary(name: str, impl: Unary, token: str | None) -> Unary:
    async def handle(request: Any, context: Context) -> Any:
        refused = check_token(token, context)
        if refused is not None:
            await abort(context, refused)
        remaining = context.time_remaining()
        try:
            async with asyncio.timeout(remaining):  # the client's deadline bounds the work
                return await impl(request, context)
        except CallError as error:  # a malformed request, refused before the pipeline
            await abort(context, error)
        except TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"{name}: the client's deadline passed")

    handle.__name__ = name
    return handle


def _unimplemented(name: str, token: str | None) -> Unary:
    message = (
        f"{SERVICE}/{name} is not implemented by outrig (see docs/api-coverage.md for the RPCs it serves)"
    )

    async def refuse(request: Any, context: Context) -> Any:
        refused = check_token(token, context)
        if refused is not None:
            await abort(context, refused)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    return refuse


def _stream(name: str, impl: StreamRpc, token: str | None) -> StreamRpc:
    async def handle(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        refused = check_token(token, context)
        if refused is not None:
            await abort(context, refused)
        try:
            async for response in impl(requests, context):
                yield response
        except CallError as error:  # refused before the first event: a bad request, no pubsub
            await abort(context, error)

    handle.__name__ = name
    return handle


def _server_stream(name: str, impl: StreamRpc, token: str | None) -> StreamRpc:
    async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
        refused = check_token(token, context)
        if refused is not None:
            await abort(context, refused)
        try:
            async for response in impl(request, context):
                yield response
        except CallError as error:  # a malformed request, refused before the first message
            await abort(context, error)

    handle.__name__ = name
    return handle


def _streaming_unimplemented(refuse: Unary) -> Callable[[Any, Context], AsyncIterator[Any]]:
    async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
        await refuse(request, context)
        yield  # pragma: no cover - abort raises first; this makes it a generator

    return stream


def _handler(
    method: MethodDescriptor, impl: Unary | None, token: str | None, stream: StreamRpc | None = None
) -> grpc.RpcMethodHandler[Any, Any]:
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    decode, encode = request_type.FromString, response_type.SerializeToString
    if stream is not None and method.client_streaming and method.server_streaming:
        return grpc.stream_stream_rpc_method_handler(_stream(method.name, stream, token), decode, encode)
    if stream is not None and method.server_streaming and not method.client_streaming:
        handle = _server_stream(method.name, stream, token)
        return grpc.unary_stream_rpc_method_handler(handle, decode, encode)
    if impl is not None:
        return grpc.unary_unary_rpc_method_handler(_unary(method.name, impl, token), decode, encode)
    refuse = _unimplemented(method.name, token)
    if method.client_streaming and method.server_streaming:
        return grpc.stream_stream_rpc_method_handler(_streaming_unimplemented(refuse), decode, encode)
    if method.client_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, decode, encode)
    if method.server_streaming:
        return grpc.unary_stream_rpc_method_handler(_streaming_unimplemented(refuse), decode, encode)
    return grpc.unary_unary_rpc_method_handler(refuse, decode, encode)


def service_handler(
    rpcs: dict[str, Unary], token: str | None, streams: dict[str, StreamRpc] | None = None
) -> grpc.GenericRpcHandler:
    """One handler per RPC of Dapr's service: implemented (unary, or a bidirectional
    stream), or UNIMPLEMENTED by name."""
    service = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"]
    streams = streams or {}
    unknown = (set(rpcs) | set(streams)) - set(service.methods_by_name)
    if unknown:
        raise ValueError(f"not RPCs of {SERVICE}: {', '.join(sorted(unknown))}")
    handlers = {m.name: _handler(m, rpcs.get(m.name), token, streams.get(m.name)) for m in service.methods}
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


class GrpcApi:
    """The gRPC server: bound at construction (a taken port stops the start early, naming
    the flag to change), given its pipeline by `serve()`, serving from `start()`."""

    def __init__(self, host: str, port: int, max_message_bytes: int = 4 * 1024 * 1024) -> None:
        # SO_REUSEPORT off: another server on the port must be an error, not a silent share.
        # Message limits from --dapr-http-max-request-size, as Dapr sizes its gRPC server.
        self.server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ]
        )
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise StartupError(
                f"cannot listen on {address} for the Dapr gRPC API: {exc}; "
                "choose another port with --dapr-grpc-port"
            ) from None

    def serve(
        self,
        pipeline: Pipeline,
        sidecar: ControlView,
        token: str | None = None,
        messaging: StreamHost | None = None,
    ) -> None:
        """Route Dapr's RPCs to `pipeline` (the sidecar's own RPCs to `sidecar`, streaming
        subscriptions to `messaging`; without it they answer UNIMPLEMENTED)."""
        streams = StreamingRpcs(messaging).rpcs() if messaging is not None else {}
        streams.update(ConfigurationRpcs(pipeline).streams())
        handler = service_handler(implemented(pipeline, sidecar), token, streams)
        self.server.add_generic_rpc_handlers((handler,))

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float = 2.0) -> None:
        await self.server.stop(grace)

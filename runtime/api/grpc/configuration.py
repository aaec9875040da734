"""GetConfiguration, SubscribeConfiguration, UnsubscribeConfiguration (and their Alpha1
names): the same Calls as `/v1.0/configuration/...` (`/v1.0-alpha1/...` for the Alpha1 RPCs).

`SubscribeConfiguration` is a server stream: its first message carries the subscription id
(and no items), then each update as its own message, Dapr's `{id, items: {key: item}}`.
Updates go to the stream instead of being POSTed to the app (a `StreamSink` on the
subscription), so no app channel is needed, as in Dapr; the per-key backlog, the re-reads
after a Redis reconnect and the inbound retry policy are those of any subscription. The
stream ending (the client cancels or goes away) ends the subscription; an
`UnsubscribeConfiguration` for its id ends the stream (status OK).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import configuration_pb2

from ...blocks.configuration import (
    DELETED,
    GetConfiguration,
    StreamSink,
    SubscribeConfiguration,
    UnsubscribeConfiguration,
    Update,
)
from ...components.configuration import Item
from ..configuration_http import ROUTES, UNSUBSCRIBE_ERROR
from .calls import Context, Pipeline, rpc_call, run
from .errors import abort

ALPHA = "Alpha1"


def _route(operation: str, rpc: str) -> str:
    version = "v1.0-alpha1" if rpc.endswith(ALPHA) else "v1.0"
    return ROUTES[operation].replace("{version}", version)


def _items(items: Mapping[str, Item]) -> dict[str, common_pb2.ConfigurationItem]:
    return {
        key: common_pb2.ConfigurationItem(
            value=item.value, version=item.version, metadata=dict(item.metadata)
        )
        for key, item in items.items()
    }


def update_message(update: Update) -> configuration_pb2.SubscribeConfigurationResponse:
    """One update on the stream; a deleted key as over HTTP (empty value and version,
    `metadata.deleted = "true"`)."""
    items = _items({update.key: update.item or DELETED})
    return configuration_pb2.SubscribeConfigurationResponse(id=update.id, items=items)


class ConfigurationRpcs:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def rpcs(self) -> dict[str, Any]:
        """The unary RPCs, by name."""
        rpcs: dict[str, Any] = {}
        for suffix in ("", ALPHA):
            rpcs["GetConfiguration" + suffix] = self._get("GetConfiguration" + suffix)
            rpcs["UnsubscribeConfiguration" + suffix] = self._unsubscribe("UnsubscribeConfiguration" + suffix)
        return rpcs

    def streams(self) -> dict[str, Any]:
        """The server-streaming RPCs, by name."""
        return {
            name: self._subscribe(name) for name in ("SubscribeConfiguration", "SubscribeConfigurationAlpha1")
        }

    def _get(self, rpc: str) -> Any:
        async def get(
            request: configuration_pb2.GetConfigurationRequest, context: Context
        ) -> configuration_pb2.GetConfigurationResponse:
            call = rpc_call(
                context, rpc, block="configuration", operation="get", target=request.store_name, subject="",
                route=_route("get", rpc), verb="GET", request=GetConfiguration(list(request.keys)),
            )  # fmt: skip
            items: dict[str, Item] = (await run(self.pipeline, call, context)).value
            return configuration_pb2.GetConfigurationResponse(items=_items(items))

        return get

    def _unsubscribe(self, rpc: str) -> Any:
        async def unsubscribe(
            request: configuration_pb2.UnsubscribeConfigurationRequest, context: Context
        ) -> configuration_pb2.UnsubscribeConfigurationResponse:
            call = rpc_call(
                context, rpc, block="configuration", operation="unsubscribe", target=request.store_name,
                subject="", route=_route("unsubscribe", rpc), verb="GET",
                request=UnsubscribeConfiguration(request.id),
            )  # fmt: skip
            result = await self.pipeline(call)
            error = result.error
            if error is not None and error.code == UNSUBSCRIBE_ERROR:  # Dapr: ok=false, not a gRPC error
                return configuration_pb2.UnsubscribeConfigurationResponse(ok=False, message=error.message)
            if error is not None:
                await abort(context, error.located(call.block, call.target))
            return configuration_pb2.UnsubscribeConfigurationResponse(ok=True)

        return unsubscribe

    def _subscribe(self, rpc: str) -> Any:
        async def subscribe(
            request: configuration_pb2.SubscribeConfigurationRequest, context: Context
        ) -> AsyncIterator[configuration_pb2.SubscribeConfigurationResponse]:
            sink = StreamSink()
            call = rpc_call(
                context, rpc, block="configuration", operation="subscribe", target=request.store_name,
                subject="", route=_route("subscribe", rpc), verb="GET",
                request=SubscribeConfiguration(list(request.keys), sink),
            )  # fmt: skip
            try:
                sub_id: str = (await run(self.pipeline, call, context)).value
                yield configuration_pb2.SubscribeConfigurationResponse(id=sub_id)
                async for update in sink.updates():
                    yield update_message(update)
            finally:  # the client cancelled or went away, or it was unsubscribed: end it (once)
                await sink.release()

        return subscribe

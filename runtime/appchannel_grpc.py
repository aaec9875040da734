"""The app channel for `--app-protocol grpc`: Calls into the app over Dapr's `AppCallback`.

Same interface as the HTTP `AppChannel` (a `Next` over Calls), so the pipelines in front of
it (app middleware, CLIENT spans, resiliency) are the same. By the call's operation:
- `invoke` -> `OnInvoke` (verb and query string in `http_extension`, metadata as headers);
- `deliver` -> `OnTopicEvent`; its `TopicEventResponse` status is answered as the HTTP
  app's `{"status": ...}` body, so delivery decides by one set of rules (an UNIMPLEMENTED
  answer is DROP, as in Dapr; any other error is RETRY);
- `subscriptions` -> `ListTopicSubscriptions`, answered as `GET /dapr/subscribe`'s JSON;
- input bindings: `options` -> `ListInputBindings` (200 when the app lists the binding,
  as an HTTP app's answer to `OPTIONS /{route}`), `trigger` -> `OnBindingEvent`.
With `APP_API_TOKEN` set, every call carries it as `dapr-api-token` metadata. Messages are
limited to `--dapr-http-max-request-size` both ways, as Dapr sizes its app channel. (Dapr's
`AppCallbackHealthCheck` is not asked: outrig has no app health checks yet.)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2
from google.protobuf import any_pb2, empty_pb2, struct_pb2
from multidict import CIMultiDict
from opentelemetry import trace

from outrig.middleware import Call, CallError, Result

from .api.grpc.errors import HTTP_STATUSES
from .api.grpc.wire import API_TOKEN, outgoing

CALLBACK = "/dapr.proto.runtime.v1.AppCallback/"
DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024
"""gRPC's own limit, and `--dapr-http-max-request-size`'s default (4 MB)."""
_CLOUDEVENT_FIELDS = frozenset(
    {"id", "source", "type", "specversion", "datacontenttype", "data", "data_base64"}
)
"""The attributes `TopicEventRequest` has fields for; every other one (`topic`, `pubsubname`,
`traceparent`, `time`, ...) goes in `extensions`, as Dapr's `ExtractCloudEventExtensions`."""
_STATUSES = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus
_RESPONSE_SKIP = frozenset({"content-type", "content-length", "date", "server"})
_VERBS = frozenset(common_pb2.HTTPExtension.Verb.keys()) - {"NONE"}


def _is_text(content_type: str) -> bool:
    """Dapr's `IsStringContentType`: `text/*` or `application/xml`."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media == "application/xml"


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "application/cloudevents+json")


def event_data(event: Mapping[str, Any]) -> bytes:
    """The payload a gRPC app gets, chosen by `datacontenttype` as Dapr's
    `GRPCEnvelopeFromSubscriptionMessage`: `data_base64` decoded; text types as the text;
    JSON and CloudEvent types as the JSON of `data` (a JSON string arrives quoted); no
    `data` (or `data: null`) as empty. Where Dapr sends nothing (another type, or a text
    type whose `data` is not a string) the JSON of `data` is sent, so no payload is lost."""
    content_type = str(event.get("datacontenttype") or "")
    if event.get("data_base64") is not None:
        return base64.b64decode(str(event["data_base64"]))
    data = event.get("data")
    if data is None:
        return b""
    if isinstance(data, str) and (_is_text(content_type) or not _is_json(content_type)):
        return data.encode()
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def topic_event(event: Mapping[str, Any], path: str) -> appcallback_pb2.TopicEventRequest:
    """A delivered CloudEvent as Dapr's `TopicEventRequest` (other attributes, such as
    `traceparent` and `time`, go in `extensions`)."""
    content_type = str(event.get("datacontenttype") or "")
    data = event_data(event)
    extensions = struct_pb2.Struct()
    extensions.update({k: v for k, v in event.items() if k not in _CLOUDEVENT_FIELDS})
    return appcallback_pb2.TopicEventRequest(
        id=str(event.get("id", "")),
        source=str(event.get("source", "")),
        type=str(event.get("type", "")),
        spec_version=str(event.get("specversion", "")),
        data_content_type=content_type,
        data=data,
        topic=str(event.get("topic", "")),
        pubsub_name=str(event.get("pubsubname", "")),
        path=path,
        extensions=extensions,
    )


def subscription_json(sub: appcallback_pb2.TopicSubscription) -> dict[str, Any]:
    """One `TopicSubscription` in `GET /dapr/subscribe`'s shape. gRPC's default route is the
    empty path; it is "/" here and "" again in the `TopicEventRequest` the app gets."""
    item: dict[str, Any] = {
        "pubsubname": sub.pubsub_name,
        "topic": sub.topic,
        "metadata": dict(sub.metadata),
        "routes": {
            "rules": [{"match": r.match, "path": r.path} for r in sub.routes.rules],
            "default": sub.routes.default or "/",
        },
    }
    if sub.dead_letter_topic:
        item["deadLetterTopic"] = sub.dead_letter_topic
    if sub.HasField("bulk_subscribe") and sub.bulk_subscribe.enabled:
        bulk: dict[str, Any] = {"enabled": True}
        if sub.bulk_subscribe.max_messages_count:
            bulk["maxMessagesCount"] = sub.bulk_subscribe.max_messages_count
        if sub.bulk_subscribe.max_await_duration_ms:
            bulk["maxAwaitDurationMs"] = sub.bulk_subscribe.max_await_duration_ms
        item["bulkSubscribe"] = bulk
    return item


def _failure(app_id: str) -> str:
    return f"failed to invoke, id: {app_id}, err"


class GrpcAppChannel:
    """Calls into our own app over gRPC (`--app-protocol grpc`)."""

    def __init__(
        self,
        app_id: str,
        host: str,
        port: int | None,
        token: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        self.app_id = app_id
        self.host = host
        self.port = port
        self.token = token
        self.max_message_bytes = max_message_bytes
        self._channel: grpc.aio.Channel | None = None
        self._stubs: dict[str, grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = {}

    def _connect(self) -> grpc.aio.Channel:
        if self.port is None:
            raise CallError(
                "ERR_DIRECT_INVOKE",
                f"{_failure(self.app_id)}: app {self.app_id} has no app port "
                "(start its sidecar with --app-port)",
                500,
            )
        if self._channel is None:
            limits = [
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", self.max_message_bytes),
            ]
            self._channel = grpc.aio.insecure_channel(f"{self.host}:{self.port}", options=limits)
        return self._channel

    def _stub(self, path: str, request: Any, response: Any) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        """The callable for one `AppCallback` method, made once per channel."""
        stub = self._stubs.get(path)
        if stub is None:
            stub = self._connect().unary_unary(
                path, request_serializer=request.SerializeToString, response_deserializer=response.FromString
            )
            self._stubs[path] = stub
        return stub

    def _metadata(self, call: Call) -> list[tuple[str, str | bytes]]:
        metadata = outgoing(call.metadata, skip=(API_TOKEN,))
        if self.token:
            metadata.append((API_TOKEN, self.token))
        return metadata

    async def __call__(self, call: Call) -> Result:
        if call.block == "invoke":
            return await self._invoke(call)
        if call.operation == "deliver":
            return await self._topic_event(call)
        if call.operation == "subscriptions":
            return await self._subscriptions(call)
        if call.block == "bindings" and call.operation == "options":
            return await self._wants_binding(call)
        if call.block == "bindings" and call.operation == "trigger":
            return await self._binding_event(call)
        raise CallError(
            "ERR_NOT_SUPPORTED",
            f"{call.block} {call.operation} is not delivered to gRPC apps yet (app {self.app_id})",
            501,
        )

    def _record(self, method: str) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({"server.address": self.host, "server.port": self.port or 0,
                                 "rpc.system": "grpc", "rpc.method": method})  # fmt: skip

    def _error(self, method: str, error: grpc.aio.AioRpcError) -> CallError:
        code = error.code()
        return CallError(
            "ERR_DIRECT_INVOKE",
            f"{_failure(self.app_id)}: app {self.app_id} at {self.host}:{self.port} answered {method} with "
            f"{code.name}: {error.details()}",
            HTTP_STATUSES.get(code, 500),
            grpc_code=code.name,
        )

    async def _invoke(self, call: Call) -> Result:
        body = await call.read()
        verb = call.verb.upper()
        request = common_pb2.InvokeRequest(
            method=call.subject,
            data=any_pb2.Any(value=body),
            content_type=call.metadata.get("content-type", ""),
            http_extension=common_pb2.HTTPExtension(
                verb=common_pb2.HTTPExtension.Verb.Value(verb)
                if verb in _VERBS
                else common_pb2.HTTPExtension.POST,
                querystring=call.query,
            ),
        )
        self._record("OnInvoke")
        rpc = self._stub(CALLBACK + "OnInvoke", common_pb2.InvokeRequest, common_pb2.InvokeResponse)
        pending = rpc(request, metadata=self._metadata(call))
        try:
            response: common_pb2.InvokeResponse = await pending
            initial = await pending.initial_metadata()
        except grpc.aio.AioRpcError as error:
            raise self._error("OnInvoke", error) from None
        headers: CIMultiDict[str] = CIMultiDict()
        for key, value in initial or ():
            if isinstance(value, str) and key not in _RESPONSE_SKIP and not key.startswith("grpc-"):
                headers.add(key, value)
        headers["content-type"] = response.content_type or "application/json"
        return Result(200, headers=headers, body=response.data.value)

    async def _topic_event(self, call: Call) -> Result:
        event = json.loads(await call.read())
        self._record("OnTopicEvent")
        rpc = self._stub(
            CALLBACK + "OnTopicEvent", appcallback_pb2.TopicEventRequest, appcallback_pb2.TopicEventResponse
        )
        try:
            response: appcallback_pb2.TopicEventResponse = await rpc(
                topic_event(event, call.subject), metadata=self._metadata(call)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return Result(404)  # Dapr drops an event the app does not handle
            raise self._error("OnTopicEvent", error) from None
        # An unknown status (a newer app's) is RETRY, as Dapr answers one it cannot read.
        status = _STATUSES.Name(response.status) if response.status in _STATUSES.values() else "RETRY"
        return Result(200, body=json.dumps({"status": status}).encode())

    async def _subscriptions(self, call: Call) -> Result:
        rpc = self._stub(
            CALLBACK + "ListTopicSubscriptions",
            empty_pb2.Empty,
            appcallback_pb2.ListTopicSubscriptionsResponse,
        )
        try:
            response: appcallback_pb2.ListTopicSubscriptionsResponse = await rpc(
                empty_pb2.Empty(), metadata=self._metadata(call)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return Result(404)
            raise self._error("ListTopicSubscriptions", error) from None
        body = json.dumps([subscription_json(s) for s in response.subscriptions]).encode()
        return Result(200, body=body)

    async def _wants_binding(self, call: Call) -> Result:
        """HTTP apps answer `OPTIONS /{route}`; gRPC apps list their input bindings."""
        rpc = self._stub(
            CALLBACK + "ListInputBindings", empty_pb2.Empty, appcallback_pb2.ListInputBindingsResponse
        )
        try:
            response: appcallback_pb2.ListInputBindingsResponse = await rpc(
                empty_pb2.Empty(), metadata=self._metadata(call)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return Result(404)
            raise self._error("ListInputBindings", error) from None
        return Result(200 if call.target in response.bindings else 404)

    async def _binding_event(self, call: Call) -> Result:
        self._record("OnBindingEvent")
        rpc = self._stub(
            CALLBACK + "OnBindingEvent",
            appcallback_pb2.BindingEventRequest,
            appcallback_pb2.BindingEventResponse,
        )
        skip = ("content-type", "traceparent", "tracestate", API_TOKEN)
        metadata = {k: v for k, v in call.metadata.items() if k.lower() not in skip}
        request = appcallback_pb2.BindingEventRequest(
            name=call.target, data=await call.read(), metadata=metadata
        )
        try:
            await rpc(request, metadata=self._metadata(call))
        except grpc.aio.AioRpcError as error:
            raise self._error("OnBindingEvent", error) from None
        return Result(200)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stubs.clear()

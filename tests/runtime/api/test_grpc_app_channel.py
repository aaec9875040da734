"""The gRPC app channel against a real (in-process) `AppCallback` server: a topic-event
answer it cannot read is RETRY, not a traceback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from dapr.proto.runtime.v1 import appcallback_pb2
from multidict import CIMultiDict

from outrig.middleware import Call, Hop
from outrig.runtime.appchannel_grpc import CALLBACK, GrpcAppChannel


@pytest.fixture
async def app_answering_status() -> AsyncIterator[int]:
    """An app whose `OnTopicEvent` answers the status in the event's data."""
    server = grpc.aio.server()

    async def on_topic_event(
        request: appcallback_pb2.TopicEventRequest, context: object
    ) -> appcallback_pb2.TopicEventResponse:
        return appcallback_pb2.TopicEventResponse(status=json.loads(request.data))  # type: ignore[arg-type]

    handler = grpc.unary_unary_rpc_method_handler(
        on_topic_event,
        appcallback_pb2.TopicEventRequest.FromString,
        appcallback_pb2.TopicEventResponse.SerializeToString,
    )
    service = CALLBACK.strip("/")
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {"OnTopicEvent": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(0)


def delivery(status: int) -> Call:
    event = {"id": "1", "specversion": "1.0", "datacontenttype": "application/json", "data": status,
             "topic": "orders", "pubsubname": "pubsub"}  # fmt: skip
    return Call(
        block="pubsub", operation="deliver", target="pubsub", subject="", hop=Hop.APP_CHANNEL, route="",
        metadata=CIMultiDict(), body=json.dumps(event).encode(), verb="POST",
    )  # fmt: skip


async def test_an_unknown_topic_event_status_is_retry(app_answering_status: int) -> None:
    channel = GrpcAppChannel("app", "127.0.0.1", app_answering_status)
    try:
        answers = [
            json.loads(await (await channel(delivery(status))).read())["status"] for status in (0, 2, 7)
        ]
    finally:
        await channel.close()
    assert answers == ["SUCCESS", "DROP", "RETRY"], "a status the proto does not know is retried"

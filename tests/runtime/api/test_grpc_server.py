"""The service handler covers every RPC of Dapr's service, and the app channel's shapes."""

from __future__ import annotations

import json

import pytest
from dapr.proto.runtime.v1 import appcallback_pb2

from outrig.runtime.api.grpc import service_handler
from outrig.runtime.appchannel_grpc import subscription_json, topic_event


def test_names_that_are_not_rpcs_of_the_service_are_refused() -> None:
    async def rpc(request: object, context: object) -> object:
        return request

    with pytest.raises(ValueError, match=r"not RPCs of dapr\.proto\.runtime\.v1\.Dapr: GetStat"):
        service_handler({"GetStat": rpc}, None)  # type: ignore[dict-item]


def test_a_delivered_cloudevent_becomes_a_topic_event_request() -> None:
    event = {"id": "1", "source": "orders", "type": "com.dapr.event.sent", "specversion": "1.0",
             "datacontenttype": "application/json", "data": {"n": 1}, "topic": "t", "pubsubname": "p",
             "traceparent": "00-a-b-01"}  # fmt: skip
    request = topic_event(event, "")
    assert (request.id, request.data, request.path, request.pubsub_name) == ("1", b'{"n":1}', "", "p")
    assert dict(request.extensions) == {"traceparent": "00-a-b-01", "topic": "t", "pubsubname": "p"}, (
        "as Dapr's ExtractCloudEventExtensions: every attribute without a field of its own"
    )
    assert topic_event({"data_base64": "AAE="}, "r").data == b"\x00\x01"


@pytest.mark.parametrize(
    ("content_type", "data", "expected"),
    [
        ("application/json", "abc", b'"abc"'),  # a JSON string stays JSON
        ("application/json", {"n": 1}, b'{"n":1}'),
        ("application/json; charset=utf-8", [1, "é"], '[1,"é"]'.encode()),
        ("application/cloudevents+json", "abc", b'"abc"'),
        ("text/plain", "abc", b"abc"),
        ("text/plain", {"n": 1}, b'{"n":1}'),  # Dapr drops it (retries); outrig keeps the payload
        ("application/xml", "<a/>", b"<a/>"),
        ("application/json", None, b""),
        ("application/octet-stream", "abc", b"abc"),  # Dapr sends nothing here
    ],
)
def test_event_data_follows_the_content_type_as_dapr(
    content_type: str, data: object, expected: bytes
) -> None:
    event = {"id": "1", "datacontenttype": content_type, "data": data}
    assert topic_event(event, "").data == expected


def test_grpc_subscriptions_read_as_daprs_subscribe_json() -> None:
    sub = appcallback_pb2.TopicSubscription(
        pubsub_name="p", topic="t", dead_letter_topic="dead",
        routes=appcallback_pb2.TopicRoutes(rules=[appcallback_pb2.TopicRule(match='event.type == "x"',
                                                                             path="on_x")]),
    )  # fmt: skip
    assert json.loads(json.dumps(subscription_json(sub))) == {
        "pubsubname": "p", "topic": "t", "metadata": {}, "deadLetterTopic": "dead",
        "routes": {"rules": [{"match": 'event.type == "x"', "path": "on_x"}], "default": "/"},
    }  # fmt: skip

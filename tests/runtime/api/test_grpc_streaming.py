"""The streaming subscription's endpoint: events out, verdicts in by event id, and what
an unanswered event becomes when the stream ends."""

from __future__ import annotations

import asyncio
import json

import pytest
from dapr.proto.runtime.v1 import appcallback_pb2, pubsub_pb2
from multidict import CIMultiDict

from outrig.middleware import Call, CallError, Hop
from outrig.runtime.api.grpc.streaming import EventStream, subscription_of
from outrig.runtime.blocks.delivery import Outcome

Status = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus


def delivery(event_id: str) -> Call:
    event = {"id": event_id, "specversion": "1.0", "datacontenttype": "application/json",
             "data": {"n": 1}, "topic": "orders", "pubsubname": "pubsub"}  # fmt: skip
    return Call(
        block="pubsub", operation="deliver", target="pubsub", subject="orders", hop=Hop.COMPONENT, route="",
        metadata=CIMultiDict(), body=json.dumps(event).encode(), verb="POST",
    )  # fmt: skip


def processed(event_id: str, status: int) -> pubsub_pb2.SubscribeTopicEventsRequestProcessedAlpha1:
    return pubsub_pb2.SubscribeTopicEventsRequestProcessedAlpha1(
        id=event_id, status=appcallback_pb2.TopicEventResponse(status=status)
    )


async def test_each_event_waits_for_the_answer_to_its_id() -> None:
    stream = EventStream("test")
    first = asyncio.create_task(stream(delivery("a")))
    second = asyncio.create_task(stream(delivery("b")))
    sent = [await stream.outgoing.get(), await stream.outgoing.get()]
    assert sorted(m.event_message.id for m in sent if m is not None) == ["a", "b"]
    assert sent[0] is not None and sent[0].event_message.data == b'{"n":1}'
    stream.answer(processed("unknown", Status.SUCCESS))  # ignored, with a warning
    stream.answer(processed("b", Status.DROP))
    stream.answer(processed("a", Status.RETRY))
    assert ((await first).status, (await first).value) == (200, Outcome.RETRY)
    assert (await second).value is Outcome.DROP


async def test_ending_the_stream_makes_unanswered_events_retries() -> None:
    stream = EventStream("test")
    waiting = asyncio.create_task(stream(delivery("a")))
    await stream.outgoing.get()
    stream.close()
    assert ((await waiting).status, (await waiting).value) == (503, Outcome.RETRY)
    assert await stream.outgoing.get() is None, "the RPC's writer is told to finish"
    assert (await stream(delivery("late"))).value is Outcome.RETRY, "nothing is sent once closed"


def test_the_first_message_must_be_the_initial_request() -> None:
    initial = pubsub_pb2.SubscribeTopicEventsRequestInitialAlpha1(
        pubsub_name="pubsub", topic="orders", dead_letter_topic="dead", metadata={"rawPayload": "true"}
    )
    subscription = subscription_of(pubsub_pb2.SubscribeTopicEventsRequestAlpha1(initial_request=initial))
    assert (subscription.kind, subscription.dead_letter_topic, subscription.raw_payload) == (
        "STREAMING",
        "dead",
        True,
    )
    assert subscription.route({"id": "1"}) == "", "every event goes to the stream"
    with pytest.raises(CallError, match="must be initial_request"):
        subscription_of(pubsub_pb2.SubscribeTopicEventsRequestAlpha1(event_processed=processed("a", 0)))
    with pytest.raises(CallError, match="must be initial_request"):
        subscription_of(None)

"""Streaming subscriptions (`SubscribeTopicEventsAlpha1`) driven by the SDK's
`subscribe_with_handler` and `subscribe` (sync and `dapr.aio` clients), against a
real sidecar with no app: events published over HTTP arrive on the stream, RETRY and
unanswered events come again, closing the stream unsubscribes, one trace links both ends."""

from __future__ import annotations

import asyncio
import queue
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from dapr.aio.clients import DaprClient as AsyncDaprClient
from dapr.clients import DaprClient
from dapr.clients.grpc._response import TopicEventResponse
from dapr.common.pubsub.subscription import SubscriptionMessage
from dapr.proto.runtime.v1 import dapr_pb2_grpc, pubsub_pb2
from google.rpc import error_details_pb2, status_pb2

from tests.runtime.test_tracing import wait_for_spans
from tests.support import Processes, Sidecar, component_yaml, resource_folder, take

Request = pubsub_pb2.SubscribeTopicEventsRequestAlpha1
Initial = pubsub_pb2.SubscribeTopicEventsRequestInitialAlpha1
TIMING = {"processingTimeout": "1s", "redeliverInterval": "0.2s"}
"""Short, so an event not acknowledged is delivered again within about a second."""


def streaming_sidecar(procs: Processes, tmp_path: Path, app_id: str) -> Sidecar:
    pubsub = component_yaml("pubsub", "pubsub.sqlite", databasePath=str(tmp_path / "pubsub.db"), **TIMING)
    folder = resource_folder(tmp_path, {"pubsub.yaml": pubsub})
    return procs.sidecar(app_id, extra_args=["--resources-path", str(folder)])


def publish(sidecar: Sidecar, topic: str, data: object, headers: dict[str, str] | None = None) -> None:
    reply = httpx.post(sidecar.url(f"/v1.0/publish/pubsub/{topic}"), json=data, headers=headers, timeout=10)
    assert reply.status_code == 204, reply.text


def streams(sidecar: Sidecar) -> list[str]:
    """The topics of the sidecar's STREAMING subscriptions, as its metadata lists them."""
    subscriptions = httpx.get(sidecar.url("/v1.0/metadata"), timeout=10).json()["subscriptions"]
    return [s["topic"] for s in subscriptions if s["type"] == "STREAMING"]


def test_events_arrive_retry_comes_again_and_closing_hands_events_back(
    procs: Processes, tmp_path: Path, point_sdk: Callable[..., str]
) -> None:
    sidecar = streaming_sidecar(procs, tmp_path, "streamer")
    got: queue.Queue[tuple[str, Any]] = queue.Queue()
    retried: set[str] = set()

    def handler(message: SubscriptionMessage) -> TopicEventResponse:
        data = message.data()
        got.put((message.id(), data))
        if data["n"] == 2 and message.id() not in retried:
            retried.add(message.id())
            return TopicEventResponse("retry")
        return TopicEventResponse("success")

    address = point_sdk(sidecar)
    with DaprClient(address) as client:
        close = client.subscribe_with_handler("pubsub", "orders", handler)
        try:
            assert streams(sidecar) == ["orders"], "the stream is a STREAMING subscription in the metadata"
            publish(sidecar, "orders", {"n": 1})
            publish(sidecar, "orders", {"n": 2})
            seen = take(got, 3, within=20)
            assert sorted(d["n"] for _, d in seen) == [1, 2, 2], "n=2 answered RETRY comes again"
            assert len({i for i, d in seen if d["n"] == 2}) == 1, "the same event, by id"
            time.sleep(0.5)  # let the last answer leave before the stream closes
        finally:
            close()
    deadline = time.monotonic() + 15
    while streams(sidecar) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert streams(sidecar) == [], "closing the stream unsubscribes"

    publish(sidecar, "orders", {"n": 3})  # nobody listens: the broker keeps it

    async def until_n3(subscription: Any) -> SubscriptionMessage:
        """The n=3 event; others (an n=2 whose SUCCESS the closing stream cut off) are answered."""
        while True:
            message = await asyncio.wait_for(subscription.next_message(), 20)
            if message.data() == {"n": 3}:
                return message
            await subscription.respond_success(message)

    async def unanswered_then_answered() -> list[Any]:
        async with AsyncDaprClient(address) as aio:
            first = await aio.subscribe("pubsub", "orders")
            held = await until_n3(first)
            await first.close()  # not answered: it goes back to the broker
            second = await aio.subscribe("pubsub", "orders")
            again = await until_n3(second)
            await second.respond_success(again)
            await asyncio.sleep(0.5)  # let the answer leave before the stream closes
            await second.close()
            return [(held.id(), held.data()), (again.id(), again.data())]

    held, again = asyncio.run(unanswered_then_answered())
    assert held[1] == {"n": 3}, "an event published while no stream was open waits for the next one"
    assert again == held, "an event left unanswered when its stream closed is delivered again"
    assert all(d["n"] != 3 for _, d in take(got, 1, within=0)), "the closed sync stream got nothing more"


def test_one_trace_links_the_publisher_and_the_stream_consumer(
    procs: Processes, tmp_path: Path, point_sdk: Callable[..., str]
) -> None:
    sidecar = streaming_sidecar(procs, tmp_path, "stream-traced")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"

    async def receive() -> SubscriptionMessage:
        got: asyncio.Queue[SubscriptionMessage] = asyncio.Queue()

        async def handler(message: SubscriptionMessage) -> TopicEventResponse:
            await got.put(message)
            return TopicEventResponse("success")

        async with AsyncDaprClient(point_sdk(sidecar)) as aio:
            close = await aio.subscribe_with_handler("pubsub", "traced", handler)
            publish(sidecar, "traced", {"n": 1}, {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
            try:
                return await asyncio.wait_for(got.get(), 20)
            finally:
                await asyncio.sleep(0.5)  # let the answer leave before the stream closes
                await close()

    message = asyncio.run(receive())
    traceparent = str(message.extensions()["traceparent"])
    assert traceparent.split("-")[1] == trace_id, "the event carries the publisher's trace"
    deadline = time.monotonic() + 15
    while True:
        spans = wait_for_spans(procs.home, trace_id, 2)
        consumer = [s for s in spans if s.kind == "CONSUMER"]
        if consumer or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert consumer, f"a CONSUMER span in the publisher's trace: {spans}"
    assert consumer[0].name == "process traced" and consumer[0].service == "stream-traced"
    assert consumer[0].attributes.get("outrig.pubsub.outcome") == "SUCCESS"
    assert traceparent.split("-")[2] == consumer[0].span_id, "the client's work continues the CONSUMER span"


def _status(error: grpc.RpcError) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.ResourceInfo]:
    trailers = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info, resource = error_details_pb2.ErrorInfo(), error_details_pb2.ResourceInfo()
    for detail in status.details:
        detail.Unpack(info) or detail.Unpack(resource)
    return info, resource


def test_bad_streams_are_refused_with_daprs_errors(
    procs: Processes, tmp_path: Path, point_sdk: Callable[..., str]
) -> None:
    sidecar = streaming_sidecar(procs, tmp_path, "stream-refused")
    address = point_sdk(sidecar)
    with grpc.insecure_channel(address) as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)

        def first_answer(request: Any) -> grpc.RpcError:
            with pytest.raises(grpc.RpcError) as refused:
                list(stub.SubscribeTopicEventsAlpha1(iter([request]), timeout=10))
            return refused.value

        missing = first_answer(Request(initial_request=Initial(pubsub_name="nopubsub", topic="t")))
        assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT, "Dapr's code for an unknown pubsub"
        info, resource = _status(missing)
        assert info.reason == "DAPR_PUBSUB_NOT_FOUND"
        assert (resource.resource_type, resource.resource_name) == ("pubsub", "nopubsub")

        no_topic = first_answer(Request(initial_request=Initial(pubsub_name="pubsub")))
        assert _status(no_topic)[0].reason == "DAPR_PUBSUB_TOPICNAME_EMPTY", "Dapr spells it so"

        answer_first = Request(event_processed=pubsub_pb2.SubscribeTopicEventsRequestProcessedAlpha1(id="x"))
        assert first_answer(answer_first).code() == grpc.StatusCode.INVALID_ARGUMENT

    with DaprClient(address) as client:
        subscription = client.subscribe("pubsub", "once")
        try:
            with pytest.raises(Exception, match="already has a subscription"):
                client.subscribe("pubsub", "once")
        finally:
            subscription.close()


def test_a_sidecar_stops_cleanly_with_a_stream_open(
    procs: Processes, tmp_path: Path, point_sdk: Callable[..., str]
) -> None:
    sidecar = streaming_sidecar(procs, tmp_path, "stream-stop")
    with DaprClient(point_sdk(sidecar)) as client:
        subscription = client.subscribe("pubsub", "open")
        try:
            publish(sidecar, "open", {"n": 1})
            assert subscription.next_message().data() == {"n": 1}  # and never answered
            sidecar.proc.send_signal(signal.SIGTERM)
            assert sidecar.proc.wait(20) == 0
        finally:
            subscription.close()
    assert "Traceback" not in sidecar.output(), sidecar.output()

"""One trace from app A's request to app B's handler, across the broker, in exported spans."""

from __future__ import annotations

import secrets

import httpx

from tests.runtime.test_tracing import wait_for_spans
from tests.support import Processes, wait_for_deliveries


def test_one_trace_from_a_request_through_publish_and_delivery_to_the_subscriber(procs: Processes) -> None:
    _, shop_port = procs.subscriber_app()
    shop = procs.sidecar("shop", app_port=shop_port)
    _, shipping_port = procs.subscriber_app([{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}])
    procs.sidecar("shipping", app_port=shipping_port)

    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    # App A (shop) is asked, through its sidecar, to publish; it publishes through that
    # same sidecar, passing on the trace context it received (as any traced app does).
    reply = httpx.post(
        shop.invoke_url("shop", f"publish?sidecar={shop.http_port}&pubsub=pubsub&topic=orders"),
        json={"order": 42},
        headers={"traceparent": f"00-{trace_id}-{caller}-01"},
    )
    assert reply.status_code == 204, reply.text

    received = wait_for_deliveries(shipping_port)
    assert received, "app B never got the event"
    seen_by_b = str(received[0]["headers"]["traceparent"])

    spans = wait_for_spans(procs.home, trace_id, 6)
    by_role = {(s.service, s.kind, s.name): s for s in spans}
    invoke_route = "POST /v1.0/invoke/{appId}/method/{method}"
    a_invoke = by_role[("shop", "SERVER", invoke_route)]
    a_to_app = by_role[("shop", "CLIENT", "POST")]
    a_publish = by_role[("shop", "SERVER", "POST /v1.0/publish/{pubsubname}/{topic}")]
    a_send = by_role[("shop", "PRODUCER", "send orders")]
    b_process = by_role[("shipping", "CONSUMER", "process orders")]
    b_to_app = by_role[("shipping", "CLIENT", "POST /orders")]

    assert a_invoke.parent_id == caller
    assert a_to_app.parent_id == a_invoke.span_id
    assert a_publish.parent_id == a_to_app.span_id, "app A's publish continues its request's trace"
    assert a_send.parent_id == a_publish.span_id
    assert b_process.parent_id == a_send.span_id, "the delivery continues the publish, across the broker"
    assert b_to_app.parent_id == b_process.span_id
    assert seen_by_b.split("-")[1:3] == [trace_id, b_to_app.span_id], "app B's handler is in the trace"

    send, process = a_send.attributes, b_process.attributes
    assert send["messaging.system"] == process["messaging.system"] == "sqlite"
    assert send["messaging.destination.name"] == process["messaging.destination.name"] == "orders"
    assert (send["messaging.operation.type"], process["messaging.operation.type"]) == ("send", "process")
    assert send["messaging.message.id"] == process["messaging.message.id"]
    assert process["messaging.consumer.group.name"] == "shipping"
    assert process["outrig.pubsub.outcome"] == "SUCCESS"


def test_a_batch_delivery_links_to_the_publish_of_each_event(procs: Processes) -> None:
    bulk = {"enabled": True, "maxMessagesCount": 3, "maxAwaitDurationMs": 5000}
    subscription = {"pubsubname": "pubsub", "topic": "batched", "route": "/batched", "bulkSubscribe": bulk}
    _, port = procs.subscriber_app([subscription])
    sidecar = procs.sidecar("batcher", app_port=port)
    traces = [secrets.token_hex(16) for _ in range(3)]
    for trace_id in traces:
        reply = httpx.post(
            sidecar.url("/v1.0/publish/pubsub/batched"),
            json={"t": trace_id},
            headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        )
        assert reply.status_code == 204
    producers = {}
    for trace_id in traces:
        spans = wait_for_spans(procs.home, trace_id, 2)
        [send] = [s for s in spans if s.kind == "PRODUCER"]
        producers[trace_id] = send.span_id

    received = wait_for_deliveries(port, lambda got: len(got) >= 3)
    assert [r["batch"] for r in received] == [3, 3, 3], "one batch of three"
    batch_trace = received[0]["headers"]["traceparent"].split("-")[1]
    spans = wait_for_spans(procs.home, batch_trace, 2)
    [process] = [s for s in spans if s.kind == "CONSUMER"]
    assert process.name == "process batched"
    assert process.parent_id is None, "a batch starts its own trace..."
    assert {(link["trace_id"], link["span_id"]) for link in process.links} == set(producers.items()), (
        "...linked to the publish of each of its events"
    )
    assert process.attributes["messaging.batch.message_count"] == 3

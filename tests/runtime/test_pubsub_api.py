"""Dapr's pub/sub as apps see it, through a real sidecar and a real subscriber app, on every
pubsub component: `pubsub.in-memory`, `pubsub.redis` (a real redis-server) and the embedded
default `pubsub.sqlite`. Publish, CloudEvents, routes and rules, the app's answers
(SUCCESS/RETRY/DROP, errors, garbage), dead letters, TTL, bulk publish, bad input.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.redis_server import RedisServer
from tests.support import Processes, Sidecar, component_yaml, resource_folder

TYPES = ["pubsub.in-memory", "pubsub.redis", "pubsub.sqlite"]
APP_ID = "subscriber"

SUBSCRIPTIONS: list[dict[str, Any]] = [
    {"pubsubname": "pubsub", "topic": "orders", "route": "/orders"},
    {"pubsubname": "pubsub", "topic": "flaky", "route": "/flaky"},
    {"pubsubname": "pubsub", "topic": "erring", "route": "/erring"},
    {"pubsubname": "pubsub", "topic": "garbage", "route": "/garbage"},
    {"pubsubname": "pubsub", "topic": "dropped", "route": "/dropped"},
    {"pubsubname": "pubsub", "topic": "unrouted", "route": "/unrouted"},
    {"pubsubname": "pubsub", "topic": "empty", "route": "/empty"},
    {"pubsubname": "pubsub", "topic": "text", "route": "/text"},
    {"pubsubname": "pubsub", "topic": "ttl", "route": "/ttl"},
    {"pubsubname": "pubsub", "topic": "doomed", "route": "/doomed", "deadLetterTopic": "dead-letters"},
    {"pubsubname": "pubsub", "topic": "dead-letters", "route": "/dead"},
    {"pubsubname": "pubsub", "topic": "raw", "route": "/raw", "metadata": {"rawPayload": "true"}},
    {
        "pubsubname": "pubsub",
        "topic": "rules",
        "routes": {
            "rules": [
                {"match": 'event.type == "widget" && event.data.price > 100', "path": "/expensive"},
                {"match": 'event.type == "widget"', "path": "/widgets"},
            ],
            "default": "/other",
        },
    },
    {"pubsubname": "pubsub", "topic": "no-default", "routes": {"rules": [{"match": "false", "path": "/x"}]}},
    {
        "pubsubname": "pubsub",
        "topic": "batched",
        "route": "/batched",
        "bulkSubscribe": {"enabled": True, "maxMessagesCount": 5, "maxAwaitDurationMs": 300},
    },
    {"pubsubname": "nowhere", "topic": "lost", "route": "/lost"},
]
BEHAVIOUR = {
    "/flaky": "retry*2",
    "/erring": "status:500*1",
    "/garbage": "garbage*1",
    "/dropped": "drop",
    "/unrouted": "status:404",
    "/empty": "empty",
    "/text": "text",
    "/ttl": "retry*1",
    "/doomed": "retry",
    "/batched": "retry*1",
}
DECLARED = """apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: declared
spec:
  pubsubname: pubsub
  topic: declared
  routes:
    default: /declared
scopes:
- subscriber
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: someone-elses
spec:
  pubsubname: pubsub
  topic: not-mine
  routes:
    default: /not-mine
scopes:
- another-app
"""


@dataclass
class Bench:
    """A sidecar with the subscriber app behind it, on one pubsub component type."""

    kind: str
    sidecar: Sidecar
    app_port: int
    client: httpx.Client

    def publish(
        self, topic: str, body: object = None, *, raw: bytes | None = None, **kw: Any
    ) -> httpx.Response:
        url = self.sidecar.url(f"/v1.0/publish/pubsub/{topic}")
        if raw is not None:
            return self.client.post(url, content=raw, **kw)
        return self.client.post(url, json=body, **kw)

    def received(self) -> list[dict[str, Any]]:
        reply = self.client.get(f"http://127.0.0.1:{self.app_port}/received")
        records: list[dict[str, Any]] = reply.json()
        return records

    def deliveries(self, marker: str) -> list[dict[str, Any]]:
        return [r for r in self.received() if marker in json.dumps(r["event"])]

    def wait_for(self, marker: str, count: int, within: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = self.deliveries(marker)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} deliveries of {marker}, got {self.deliveries(marker)}")

    def settle(self, marker: str, seconds: float = 2.5) -> list[dict[str, Any]]:
        """The deliveries of `marker` once no more can come (redeliveries take 1s here)."""
        time.sleep(seconds)
        return self.deliveries(marker)


@pytest.fixture(scope="module", params=TYPES)
def bench(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    root = tmp_path_factory.mktemp("pubsub")
    (root / "home").mkdir()
    procs = Processes(home=root / "home", workdir=root)
    files = {"subscriptions.yaml": DECLARED}
    redis: RedisServer | None = None
    timing = {"processingTimeout": "1s", "redeliverInterval": "0.2s"}
    if request.param == "pubsub.redis":
        redis = RedisServer(root / "redis").start()
        files["pubsub.yaml"] = component_yaml("pubsub", "pubsub.redis", redisHost=redis.address, **timing)
    elif request.param == "pubsub.in-memory":
        files["pubsub.yaml"] = component_yaml("pubsub", "pubsub.in-memory", **timing)
    else:  # the embedded default, named `pubsub`, with the timing made short for the test
        files["pubsub.yaml"] = component_yaml(
            "pubsub", "pubsub.sqlite", databasePath=str(root / "pubsub.db"), **timing
        )
    folder = resource_folder(root, files)
    _, port = procs.subscriber_app(SUBSCRIPTIONS, BEHAVIOUR)
    try:
        sidecar = procs.sidecar(
            APP_ID,
            app_port=port,
            extra_args=["--resources-path", str(folder), "--dapr-http-max-request-size", "1"],
        )
        with httpx.Client(timeout=30) as client:
            yield Bench(request.param, sidecar, port, client)
    finally:
        procs.stop_all()
        if redis is not None:
            redis.stop()


def marker() -> str:
    return secrets.token_hex(6)


def test_a_json_publish_arrives_as_a_cloudevent(bench: Bench) -> None:
    m = marker()
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    reply = bench.publish("orders", {"order": m}, headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    assert (reply.status_code, reply.content) == (204, b"")
    [got] = bench.wait_for(m, 1)
    event = got["event"]
    assert event["data"] == {"order": m}
    assert event["datacontenttype"] == "application/json"
    assert (event["specversion"], event["type"], event["source"]) == ("1.0", "com.dapr.event.sent", APP_ID)
    assert (event["topic"], event["pubsubname"]) == ("orders", "pubsub")
    assert event["id"] and event["time"].endswith("Z")
    # The event carries the publish span's context, in the caller's trace; the app gets
    # the context of the delivery, in the same trace.
    assert event["traceparent"].split("-")[1] == trace_id
    assert got["headers"]["traceparent"].split("-")[1] == trace_id
    assert got["headers"]["content-type"] == "application/cloudevents+json"
    assert got["headers"]["pubsubname"] == "pubsub"
    assert bench.settle(m, 1.5) == [got], "acknowledged: delivered once"


def test_content_types_decide_how_data_is_carried(bench: Bench) -> None:
    m = marker()
    blob = b"\x00\xff" + m.encode()
    bench.publish("orders", raw=f"plain {m}".encode(), headers={"content-type": "text/plain"})
    bench.publish("orders", raw=f"untyped {m}".encode())
    bench.publish("orders", raw=blob, headers={"content-type": "application/octet-stream"})
    events = [r["event"] for r in bench.wait_for(m, 2)]
    assert sorted((e["data"], e["datacontenttype"]) for e in events) == [
        (f"plain {m}", "text/plain"),
        (f"untyped {m}", "text/plain"),
    ]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        binary = [r["event"] for r in bench.received() if r["event"].get("data_base64")]
        if any(base64.b64decode(e["data_base64"]) == blob for e in binary):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("binary payloads travel as data_base64")


def test_an_apps_own_cloudevent_is_completed_and_passed_through(bench: Bench) -> None:
    m = marker()
    event = {"specversion": "1.0", "id": f"id-{m}", "source": "shop", "type": "order.placed",
             "myextension": "kept", "data": {"m": m}, "topic": "ignored"}  # fmt: skip
    reply = bench.publish("orders", raw=json.dumps(event).encode(),
                          headers={"content-type": "application/cloudevents+json"})  # fmt: skip
    assert reply.status_code == 204
    [got] = bench.wait_for(m, 1)
    delivered = got["event"]
    assert (delivered["id"], delivered["source"], delivered["type"]) == (f"id-{m}", "shop", "order.placed")
    assert delivered["myextension"] == "kept"
    assert (delivered["topic"], delivered["pubsubname"]) == ("orders", "pubsub")
    assert delivered["datacontenttype"] == "application/json"


def test_a_raw_payload_is_delivered_as_data_base64(bench: Bench) -> None:
    m = marker()
    payload = f"legacy {m}".encode()
    reply = bench.publish("raw", raw=payload, params={"metadata.rawPayload": "true"})
    assert reply.status_code == 204
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = [r for r in bench.received() if r["route"] == "/raw" and
                 base64.b64decode(r["event"].get("data_base64", "")) == payload]  # fmt: skip
        if found:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the raw payload never arrived")
    assert found[0]["event"]["datacontenttype"] == "application/octet-stream"
    assert (found[0]["event"]["topic"], found[0]["event"]["pubsubname"]) == ("raw", "pubsub")


def test_rules_route_each_event_by_its_content(bench: Bench) -> None:
    m = marker()
    for price in (500, 5):
        event = {"specversion": "1.0", "id": f"{m}-{price}", "source": "shop", "type": "widget",
                 "data": {"price": price, "m": m}}  # fmt: skip
        bench.publish("rules", raw=json.dumps(event).encode(),
                      headers={"content-type": "application/cloudevents+json"})  # fmt: skip
    bench.publish("rules", {"kind": "gadget", "m": m})
    routes = sorted((r["route"], r["event"]["data"].get("price")) for r in bench.wait_for(m, 3))
    assert routes == [("/expensive", 500), ("/other", None), ("/widgets", 5)]


def test_no_matching_rule_and_no_default_drops_the_event(bench: Bench) -> None:
    m = marker()
    assert bench.publish("no-default", {"m": m}).status_code == 204
    assert bench.settle(m, 1.5) == []


@pytest.mark.parametrize(
    ("topic", "attempts"),
    [
        ("flaky", 3),  # RETRY twice, then SUCCESS
        ("erring", 2),  # HTTP 500 once
        ("garbage", 2),  # an unknown status once
        ("dropped", 1),  # DROP: done
        ("unrouted", 1),  # HTTP 404: dropped
        ("empty", 1),  # 200 with no body: SUCCESS
        ("text", 1),  # 200 with a body that is not JSON: SUCCESS
    ],
)
def test_the_apps_answer_decides_redelivery(bench: Bench, topic: str, attempts: int) -> None:
    m = marker()
    assert bench.publish(topic, {"m": m}).status_code == 204
    bench.wait_for(m, attempts)
    got = bench.settle(m)
    assert [r["attempt"] for r in got] == list(range(1, attempts + 1))
    assert len({r["id"] for r in got}) == 1, "a redelivery is the same event"


def test_a_message_the_app_keeps_refusing_goes_to_the_dead_letter_topic(bench: Bench) -> None:
    m = marker()
    assert bench.publish("doomed", {"m": m}).status_code == 204
    deliveries = bench.wait_for(m, 2)
    got = bench.settle(m, 2)
    assert [r["route"] for r in got] == ["/doomed", "/dead"], got
    original, dead = got[0]["event"], got[1]["event"]
    assert dead["id"] == original["id"] and dead["data"] == {"m": m}
    assert deliveries[0]["attempt"] == 1


def test_an_event_past_its_ttl_is_not_delivered_again(bench: Bench) -> None:
    """The app asks for a retry; by then (1s later) the event with a 1s TTL has expired."""
    short, long = marker(), marker()
    assert bench.publish("ttl", {"m": short}, params={"metadata.ttlInSeconds": "1"}).status_code == 204
    assert bench.publish("ttl", {"m": long}, params={"metadata.ttlInSeconds": "60"}).status_code == 204
    bench.wait_for(long, 2)
    assert len(bench.settle(short, 1)) == 1
    assert "expiration" in bench.deliveries(short)[0]["event"]


def test_declarative_subscriptions_are_scoped(bench: Bench) -> None:
    m = marker()
    bench.publish("declared", {"m": m})
    [got] = bench.wait_for(m, 1)
    assert got["route"] == "/declared"
    listed = bench.client.get(bench.sidecar.url("/v1.0/metadata")).json()["subscriptions"]
    by_topic = {s["topic"]: s for s in listed}
    assert by_topic["declared"]["type"] == "DECLARATIVE"
    assert by_topic["orders"]["type"] == "PROGRAMMATIC"
    assert by_topic["doomed"]["deadLetterTopic"] == "dead-letters"
    assert by_topic["rules"]["rules"][0] == {
        "match": 'event.type == "widget" && event.data.price > 100',
        "path": "/expensive",
    }
    assert "not-mine" not in by_topic, "scoped to another app"
    assert "lost" not in by_topic, "its pubsub is not configured"
    assert "pubsub nowhere is not configured" in bench.sidecar.output().replace(
        "pubsub nowhere is", "pubsub nowhere is"
    )


def test_bulk_publish_delivers_every_entry(bench: Bench) -> None:
    m = marker()
    entries = [
        {"entryId": f"e{i}", "event": {"i": i, "m": m}, "contentType": "application/json"} for i in range(10)
    ]
    entries.append({"entryId": "txt", "event": f"text {m}", "contentType": "text/plain"})
    reply = bench.client.post(bench.sidecar.url("/v1.0-alpha1/publish/bulk/pubsub/orders"), json=entries)
    assert (reply.status_code, reply.content) == (204, b"")
    got = bench.wait_for(m, 11)
    assert sorted(r["event"]["data"]["i"] for r in got if isinstance(r["event"]["data"], dict)) == list(
        range(10)
    )
    assert [r["event"]["data"] for r in got if isinstance(r["event"]["data"], str)] == [f"text {m}"]


def test_bulk_subscriptions_get_batches_with_a_verdict_per_entry(bench: Bench) -> None:
    m = marker()
    entries = [
        {"entryId": f"e{i}", "event": {"i": i, "m": m}, "contentType": "application/json"} for i in range(12)
    ]
    reply = bench.client.post(bench.sidecar.url("/v1.0-alpha1/publish/bulk/pubsub/batched"), json=entries)
    assert reply.status_code == 204
    bench.wait_for(m, 24)
    got = bench.settle(m, 1.5)
    by_event = Counter(r["event"]["data"]["i"] for r in got)
    assert by_event == dict.fromkeys(range(12), 2), "each entry RETRY once, then SUCCESS"
    sizes = [r["batch"] for r in got]
    assert max(sizes) <= 5 and max(sizes) > 1, sizes
    assert all(r["route"] == "/batched" for r in got)
    listed = bench.client.get(bench.sidecar.url("/v1.0/metadata")).json()["subscriptions"]
    [batched] = [s for s in listed if s["topic"] == "batched"]
    assert batched["bulkSubscribe"] == {"enabled": True, "maxMessagesCount": 5, "maxAwaitDurationMs": 300}


Check = Callable[[httpx.Response], None]


def _error(status: int, code: str, *words: str) -> Check:
    def check(reply: httpx.Response) -> None:
        assert reply.status_code == status, reply.text
        body = reply.json()
        assert body["errorCode"] == code
        for word in words:
            assert word in body["message"], body["message"]

    return check


PUBLISH = "/v1.0/publish/pubsub/orders"
CE_ERROR = "ERR_PUBSUB_CLOUD_EVENTS_SER"
BULK = "/v1.0-alpha1/publish/bulk/pubsub/orders"
AS_CLOUDEVENT = {"content-type": "application/cloudevents+json"}
TWICE = [{"entryId": "a", "event": 1}, {"entryId": "a", "event": 2}]
TOO_BIG = b"x" * (1024 * 1024 + 1)


@pytest.mark.parametrize(
    ("path", "kwargs", "check"),
    [
        (
            "/v1.0/publish/nope/orders",
            {"json": {}},
            _error(404, "ERR_PUBSUB_NOT_FOUND", "nope", "(configured: pubsub)"),
        ),
        ("/v1.0/publish/pubsub/", {"json": {}}, _error(404, "ERR_TOPIC_EMPTY", "pubsub")),
        (PUBLISH, {"content": b"{no", "headers": AS_CLOUDEVENT}, _error(400, CE_ERROR, "not valid JSON")),
        (PUBLISH, {"content": b"[1]", "headers": AS_CLOUDEVENT}, _error(400, CE_ERROR, "JSON object")),
        (PUBLISH, {"json": {"specversion": "0.3"}, "headers": AS_CLOUDEVENT}, _error(400, CE_ERROR, "0.3")),
        (
            PUBLISH,
            {"content": TOO_BIG},
            _error(413, "ERR_PUBSUB_PUBLISH_MESSAGE", "1048576", "max-request-size"),
        ),
        (
            PUBLISH + "?metadata.ttlInSeconds=soon",
            {"json": {}},
            _error(400, "ERR_PUBSUB_REQUEST_METADATA", "'soon'"),
        ),
        (BULK, {"json": {"not": "a list"}}, _error(400, "ERR_PUBSUB_EVENTS_SER", "array")),
        (BULK, {"json": TWICE}, _error(400, "ERR_PUBSUB_EVENTS_SER", "entries[1]", "unique")),
        (BULK, {"json": [{"event": 1}]}, _error(400, "ERR_PUBSUB_EVENTS_SER", "entries[0]", "entryId")),
    ],
)
def test_bad_publishes_get_dapr_errors(bench: Bench, path: str, kwargs: dict[str, Any], check: Check) -> None:
    check(bench.client.post(bench.sidecar.url(path), **kwargs))
    assert bench.client.get(bench.sidecar.url("/v1.0/healthz")).status_code == 204


def test_publish_only_takes_post(bench: Bench) -> None:
    reply = bench.client.get(bench.sidecar.url("/v1.0/publish/pubsub/orders"))
    assert (reply.status_code, reply.json()["errorCode"]) == (405, "ERR_METHOD_NOT_ALLOWED")


def test_the_sidecar_log_names_skipped_subscriptions(bench: Bench) -> None:
    output = bench.sidecar.output()
    assert "topic lost: pubsub nowhere is not configured (configured: pubsub); skipped" in output

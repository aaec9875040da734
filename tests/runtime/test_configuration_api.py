"""Dapr's configuration API on `configuration.redis`, behind real sidecars and a real redis-server:
get, subscribe (updates made with redis-py reach the app), unsubscribe, errors, restarts."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis

from outrig.middleware import Call, CallError, Next, Pipeline, Result
from outrig.runtime.blocks.configuration import (
    ConfigurationBlock,
    ConfigurationDelivery,
    ConfigurationEndpoint,
    ConfigurationEntry,
    StreamSink,
    Subscription,
    Update,
)
from outrig.runtime.components.configuration import RESYNC, Change, Item, RedisConfigurationStore
from outrig.runtime.components.redis_connection import RedisSettings
from tests.redis_server import RedisServer
from tests.runtime.test_tracing import wait_for_spans
from tests.support import Processes, Sidecar, component_yaml, free_port, resource_folder, wait_for_port

STORE = "configstore"
WATCHER_APP = Path(__file__).parent.parent / "apps" / "config_watcher.py"


RETRY_INBOUND = f"""apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: policies
spec:
  policies:
    retries:
      again:
        policy: constant
        duration: 20ms
        maxRetries: 3
  targets:
    components:
      {STORE}:
        inbound:
          retry: again
"""


def config_sidecar(
    procs: Processes,
    server: RedisServer,
    app_id: str,
    tmp_path: Path,
    app_port: int | None = None,
    extra: dict[str, str] | None = None,
) -> Sidecar:
    component = component_yaml(STORE, "configuration.redis", redisHost=server.address)
    files = {"config.yaml": component, **(extra or {})}
    resources = resource_folder(tmp_path, files, folder=f"res-{app_id}")
    return procs.sidecar(app_id, app_port=app_port, extra_args=["--resources-path", str(resources)])


def watcher(procs: Processes, fail_first: int = 0) -> int:
    port = free_port()
    env = {**procs.env(), "CONFIG_WATCHER_FAIL_FIRST": str(fail_first)}
    proc = procs.spawn([sys.executable, str(WATCHER_APP), str(port)], f"watcher-{port}.log", env=env)
    wait_for_port(port, proc)
    return port


def subscribe(sidecar: Sidecar, *keys: str) -> str:
    query = "&".join(f"key={key}" for key in keys)
    reply = httpx.get(sidecar.url(f"/v1.0/configuration/{STORE}/subscribe?{query}"), timeout=30)
    assert reply.status_code == 200, reply.text
    sub_id: str = reply.json()["id"]
    return sub_id


def received(port: int) -> list[dict[str, Any]]:
    updates: list[dict[str, Any]] = httpx.get(f"http://127.0.0.1:{port}/received", timeout=30).json()
    return updates


def wait_for(port: int, enough: Callable[[list[dict[str, Any]]], bool], what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        got = received(port)
        if enough(got):
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}; received: {got}"
        time.sleep(0.05)


def numsub(client: redis.Redis, key: str) -> int:
    [(_, count)] = client.pubsub_numsub(f"__keyspace@0__:{key}")
    return int(count)


def test_get_items_by_key_and_all_items_in_dapr_shape(
    procs: Processes, redis_server: RedisServer, tmp_path: Path
) -> None:
    client = redis.Redis(port=redis_server.port)
    client.flushdb()
    client.mset({"orderId1": "101||1", "orderId2": "102||v2", "plain": "no version", "joined": "a||b||7"})
    client.hset("not-a-string", "f", "v")
    sidecar = config_sidecar(procs, redis_server, "reader", tmp_path)

    some = httpx.get(sidecar.url(f"/v1.0/configuration/{STORE}?key=orderId1&key=orderId2&key=missing"))
    assert some.status_code == 200
    assert some.json() == {
        "orderId1": {"value": "101", "version": "1", "metadata": {}},
        "orderId2": {"value": "102", "version": "v2", "metadata": {}},
    }
    everything = httpx.get(sidecar.url(f"/v1.0/configuration/{STORE}")).json()
    assert set(everything) == {"orderId1", "orderId2", "plain", "joined"}  # the hash is skipped
    assert everything["plain"] == {"value": "no version", "version": "", "metadata": {}}
    assert everything["joined"] == {"value": "a||b", "version": "7", "metadata": {}}
    alpha = httpx.get(sidecar.url(f"/v1.0-alpha1/configuration/{STORE}?key=orderId1"))
    assert alpha.json() == {"orderId1": {"value": "101", "version": "1", "metadata": {}}}
    none = httpx.get(sidecar.url(f"/v1.0/configuration/{STORE}?key=missing"))
    assert (none.status_code, none.content) == (204, b"")


def test_configuration_errors(procs: Processes, redis_server: RedisServer, tmp_path: Path) -> None:
    sidecar = config_sidecar(procs, redis_server, "errors", tmp_path)  # no app: cannot subscribe
    unknown = httpx.get(sidecar.url("/v1.0/configuration/nope?key=a"))
    assert (unknown.status_code, unknown.json()["errorCode"]) == (400, "ERR_CONFIGURATION_STORE_NOT_FOUND")
    assert "nope" in unknown.json()["message"] and STORE in unknown.json()["message"]
    for path in ("/v1.0/configuration/nope/subscribe", "/v1.0/configuration/nope/some-id/unsubscribe"):
        assert httpx.get(sidecar.url(path)).json()["errorCode"] == "ERR_CONFIGURATION_STORE_NOT_FOUND"
    no_app = httpx.get(sidecar.url(f"/v1.0/configuration/{STORE}/subscribe?key=a"))
    assert (no_app.status_code, no_app.json()["errorCode"]) == (500, "ERR_APP_CHANNEL_NIL")
    not_there = httpx.get(sidecar.url(f"/v1.0/configuration/{STORE}/no-such-id/unsubscribe"))
    assert not_there.status_code == 500
    assert not_there.json()["ok"] is False and "no-such-id" in not_there.json()["message"]
    wrong_verb = httpx.post(sidecar.url(f"/v1.0/configuration/{STORE}"))
    assert (wrong_verb.status_code, wrong_verb.json()["errorCode"]) == (405, "ERR_METHOD_NOT_ALLOWED")
    bad_route = httpx.get(sidecar.url(f"/v1.0/configuration/{STORE}/a/b/c"))
    assert (bad_route.status_code, bad_route.json()["errorCode"]) == (404, "ERR_NOT_FOUND")
    components = httpx.get(sidecar.url("/v1.0/metadata")).json()["components"]
    assert {"name": STORE, "type": "configuration.redis", "version": "v1", "capabilities": []} in components


def test_without_any_configuration_store_it_is_not_configured(procs: Processes) -> None:
    sidecar = procs.sidecar("bare-config")
    reply = httpx.get(sidecar.url("/v1.0/configuration/configstore?key=a"))
    assert (reply.status_code, reply.json()["errorCode"]) == (500, "ERR_CONFIGURATION_STORE_NOT_CONFIGURED")


def test_a_subscription_receives_updates_until_unsubscribed(
    procs: Processes, redis_server: RedisServer, tmp_path: Path
) -> None:
    port = watcher(procs)
    sidecar = config_sidecar(procs, redis_server, "watching", tmp_path, app_port=port)
    client = redis.Redis(port=redis_server.port)
    a, b, other = (f"{name}-{secrets.token_hex(3)}" for name in ("a", "b", "other"))
    client.set(a, "0||0")

    reply = httpx.get(sidecar.url(f"/v1.0/configuration/{STORE}/subscribe?key={a}&key={b}"))
    assert reply.status_code == 200
    sub_id = reply.json()["id"]
    everything = httpx.get(sidecar.url(f"/v1.0-alpha1/configuration/{STORE}/subscribe")).json()["id"]
    assert numsub(client, a) == 1

    client.set(a, "1||v1")
    client.set(other, "x||1")  # not watched by the first subscription
    client.set(b, "2||v2")

    def mine(updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [u for u in updates if u["body"]["id"] == sub_id]

    # The value is read when the update is delivered: wait, or the delete could overtake it.
    wait_for(port, lambda u: len(mine(u)) >= 2, "two updates")
    client.delete(a)
    got = mine(wait_for(port, lambda u: len(mine(u)) >= 3, "three updates"))
    assert [u["path"] for u in got] == [f"/configuration/{STORE}/{a}", f"/configuration/{STORE}/{b}",
                                        f"/configuration/{STORE}/{a}"]  # fmt: skip
    assert got[0]["body"] == {"id": sub_id, "items": {a: {"value": "1", "version": "v1", "metadata": {}}}}
    assert got[1]["body"]["items"] == {b: {"value": "2", "version": "v2", "metadata": {}}}
    assert got[2]["body"]["items"] == {a: {"value": "", "version": "", "metadata": {"deleted": "true"}}}
    assert got[0]["content_type"] == "application/json"
    trace_id = got[0]["traceparent"].split("-")[1]
    spans = {span.name: span for span in wait_for_spans(procs.home, trace_id, 3)}
    process = spans[f"process {STORE}"]
    assert (process.kind, process.parent_id) == ("CONSUMER", None)
    assert process.attributes["outrig.configuration.key"] == a
    read, post = spans[f"MGET {STORE}"], spans["POST /configuration/{storeName}/{key}"]
    assert (read.kind, read.parent_id) == ("CLIENT", process.span_id)
    assert (post.kind, post.parent_id) == ("CLIENT", process.span_id)
    all_keys = wait_for(port, lambda u: any(x["body"]["id"] == everything and other in x["body"]["items"]
                                            for x in u), "the all-keys subscription")  # fmt: skip
    assert all_keys

    done = httpx.get(sidecar.url(f"/v1.0/configuration/{STORE}/{sub_id}/unsubscribe"))
    assert (done.status_code, done.json()) == (200, {"ok": True})
    assert numsub(client, a) == 0 and numsub(client, b) == 0  # nobody listens to these keys any more
    again = httpx.get(sidecar.url(f"/v1.0/configuration/{STORE}/{sub_id}/unsubscribe"))
    assert again.status_code == 500 and again.json()["ok"] is False

    client.set(a, "3||v3")
    marker = f"marker-{secrets.token_hex(3)}"
    client.set(marker, "m||1")
    wait_for(port, lambda u: any(marker in x["body"]["items"] for x in u), "the marker update")
    time.sleep(0.5)  # a late delivery to the ended subscription would have come with the marker
    assert len(mine(received(port))) == 3, "no update after unsubscribe"


def test_a_subscription_survives_a_redis_restart_and_shutdown_ends_it(
    procs: Processes, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        port = watcher(procs)
        sidecar = config_sidecar(procs, server, "restarts", tmp_path, app_port=port)
        client = redis.Redis(port=server.port)
        client.config_set("notify-keyspace-events", "Ez")  # flags of some other tool: kept
        sub_id = httpx.get(sidecar.url(f"/v1.0/configuration/{STORE}/subscribe?key=k")).json()["id"]
        flags = str(client.config_get("notify-keyspace-events")["notify-keyspace-events"])
        assert set("EzK$gxe") <= set(flags.replace("A", "g$lshztxed")), flags
        client.set("k", "before||1")
        wait_for(port, lambda u: len(u) >= 1, "the update before the restart")

        server.kill()
        server.start()  # same port; the restarted server has forgotten notify-keyspace-events
        deadline = time.monotonic() + 15
        while "reconnected and resubscribed" not in sidecar.output():
            assert time.monotonic() < deadline, sidecar.output()
            time.sleep(0.05)
        client.set("k", "after||2")
        got = wait_for(port, lambda u: any("after" in str(x["body"]) for x in u), "the update after")
        assert got[-1]["body"] == {"id": sub_id, "items": {"k": {"value": "after", "version": "2",
                                                                 "metadata": {}}}}  # fmt: skip

        assert numsub(client, "k") == 1
        sidecar.proc.terminate()
        assert sidecar.proc.wait(15) == 0
        assert numsub(client, "k") == 0, "shutdown ended the subscription"
    finally:
        server.stop()


def test_updates_made_while_redis_was_unreachable_are_delivered_after_reconnect(
    procs: Processes, tmp_path: Path
) -> None:
    """A change the listener could not hear (made while its connection was down) is found
    by re-reading the watched keys once it is back."""
    server = RedisServer(tmp_path / "redis", durable=True).start()
    try:
        port = watcher(procs)
        sidecar = config_sidecar(procs, server, "resync", tmp_path, app_port=port)
        client = redis.Redis(port=server.port)
        client.set("k", "one||1")
        client.set("same", "s||1")
        subscribe(sidecar, "k", "same")
        # Drop the sidecar's subscriber connection and write in one transaction: Redis runs
        # both at once, so the notification cannot reach the listener (race-free).
        [subscriber] = [entry["id"] for entry in client.client_list() if int(entry.get("sub", 0)) > 0]
        with client.pipeline(transaction=True) as both:
            both.client_kill_filter(_id=subscriber)
            both.set("k", "two||2")
            both.execute()
        got = wait_for(port, lambda u: any("two" in str(x["body"]) for x in u), "the missed update")
        assert [u["path"] for u in got] == [f"/configuration/{STORE}/k"]  # `same` did not change
        assert "reconnected and resubscribed" in sidecar.output()
        trace_id = got[0]["traceparent"].split("-")[1]
        spans = {span.name: span for span in wait_for_spans(procs.home, trace_id, 3)}
        assert spans[f"process {STORE}"].attributes["outrig.configuration.event"] == "resync"
    finally:
        server.stop()


def test_a_failed_update_is_sent_again_by_the_inbound_retry_policy(
    procs: Processes, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The app fails the first two POSTs; the store's `component-inbound` retry sends the
    same update again until the app accepts it (it is not taken as already sent)."""
    port = watcher(procs, fail_first=2)
    sidecar = config_sidecar(procs, redis_server, "retried", tmp_path, port, {"retry.yaml": RETRY_INBOUND})
    client = redis.Redis(port=redis_server.port)
    key = f"retried-{secrets.token_hex(3)}"
    sub_id = subscribe(sidecar, key)
    client.set(key, "1||v1")
    got = wait_for(port, lambda u: any(x["status"] == 200 for x in u), "an accepted update")
    assert [u["status"] for u in got] == [500, 500, 200]
    item = {key: {"value": "1", "version": "v1", "metadata": {}}}
    assert [u["body"] for u in got] == [{"id": sub_id, "items": item}] * 3
    client.set(key, "2||v2")
    got = wait_for(port, lambda u: len(u) >= 4, "the next update")
    assert got[3]["body"]["items"] == {key: {"value": "2", "version": "v2", "metadata": {}}}


def test_an_all_keys_subscription_sends_only_items_and_deletes_of_items_it_sent(
    procs: Processes, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Deleting a key it never delivered (another tool's, a state TTL) or writing a hash
    reaches the app as nothing; deleting an item it delivered is a deleted item."""
    port = watcher(procs)
    sidecar = config_sidecar(procs, redis_server, "all-keys", tmp_path, app_port=port)
    client = redis.Redis(port=redis_server.port)
    stale, hashed, item, marker = (f"{n}-{secrets.token_hex(3)}" for n in ("stale", "hash", "item", "marker"))
    client.set(stale, "old||1")
    sub_id = subscribe(sidecar)
    client.delete(stale)
    client.hset(hashed, "field", "value")
    client.delete(hashed)
    client.set(item, "i||1")
    wait_for(port, lambda u: any(item in x["body"]["items"] for x in u), "the item")
    client.delete(item)
    client.set(marker, "m||1")
    got = wait_for(port, lambda u: any(marker in x["body"]["items"] for x in u), "the marker")
    mine = [
        u["body"]
        for u in got
        if u["body"]["id"] == sub_id and set(u["body"]["items"]) & {stale, hashed, item}
    ]
    assert mine == [
        {"id": sub_id, "items": {item: {"value": "i", "version": "1", "metadata": {}}}},
        {"id": sub_id, "items": {item: {"value": "", "version": "", "metadata": {"deleted": "true"}}}},
    ]


def test_pending_updates_are_bounded_by_the_distinct_keys_changed() -> None:
    """Values are read when delivered, so a key changed a thousand times is one pending entry."""
    sub = Subscription("s", cast(Any, None), ("a", "b"))
    for n in range(1000):
        sub.notify(Change("a" if n % 2 else "b", "set"))
    sub.notify(Change("a", "del"))
    assert sub.pending == {"b": "set", "a": "del"}
    sub.notify(Change("", RESYNC))
    assert sub.pending == {"b": RESYNC, "a": RESYNC}
    assert sub.ready.is_set()


async def test_a_failed_unsubscribe_still_ends_the_worker_and_the_watch(redis_server: RedisServer) -> None:
    """The store call of an unsubscribe fails (here: a layer of its pipeline refuses it, as a
    resiliency timeout would): the subscription's worker and watch end anyway."""

    async def refuse_unsubscribe(call: Call, call_next: Next) -> Result:
        if call.operation == "unsubscribe":
            raise CallError("ERR_CONFIGURATION_UNSUBSCRIBE", "timed out", 500)
        return await call_next(call)

    store = RedisConfigurationStore(RedisSettings.from_metadata({"redisHost": redis_server.address}))
    entry = ConfigurationEntry(
        STORE, "configuration.redis", store, Pipeline([refuse_unsubscribe], ConfigurationEndpoint(store))
    )
    block = ConfigurationBlock(
        {STORE: entry}, Pipeline([], ConfigurationDelivery(Pipeline([], no_app))), True
    )
    key = f"leak-{secrets.token_hex(3)}"
    try:
        sub_id = await block._subscribe(entry, [key])
        sub = block.subscriptions[sub_id]
        assert numsub(redis.Redis(port=redis_server.port), key) == 1
        with pytest.raises(CallError, match="timed out"):
            await block._unsubscribe(entry, sub_id)
        assert sub.worker is not None and sub.worker.done()
        assert sub.watch is None and store.watches == []
        assert numsub(redis.Redis(port=redis_server.port), key) == 0
        assert sub_id not in block.subscriptions
    finally:
        await block.close()


async def no_app(call: Call) -> Result:
    raise AssertionError("no update is delivered in this test")


async def test_a_stream_sink_hands_over_one_update_at_a_time_and_ends_once() -> None:
    """`send` answers only when the reader asks for the next update (so a slow reader holds
    the worker back, and the backlog stays the per-key `pending`); closing fails the update
    in hand and ends the reader; `release` ends the subscription once."""
    sink = StreamSink()
    ended: list[str] = []

    async def end() -> None:
        ended.append("ended")

    sink.attach(end)
    updates = aiter(sink.updates())
    first = asyncio.ensure_future(sink.send(Update("s", STORE, "a", Item("1", "v1"))))
    assert await anext(updates) == Update("s", STORE, "a", Item("1", "v1"))
    await asyncio.sleep(0)
    assert not first.done(), "not sent until the reader has written it"
    second = asyncio.ensure_future(sink.send(Update("s", STORE, "a", None)))
    update = await anext(updates)  # asking for the next one marks the first as written
    assert (await first).status == 200
    assert update.item is None and update.to_json()["items"]["a"]["metadata"] == {"deleted": "true"}
    sink.close()
    assert (await second).status == 503, "the stream ended before it was written"
    assert [u async for u in updates] == []
    assert (await sink.send(Update("s", STORE, "b", None))).status == 503
    await sink.release()
    await sink.release()
    assert ended == ["ended"]


async def test_a_stream_subscription_needs_no_app_and_ends_with_its_stream(redis_server: RedisServer) -> None:
    store = RedisConfigurationStore(RedisSettings.from_metadata({"redisHost": redis_server.address}))
    entry = ConfigurationEntry(
        STORE, "configuration.redis", store, Pipeline([], ConfigurationEndpoint(store))
    )
    block = ConfigurationBlock(
        {STORE: entry}, Pipeline([], ConfigurationDelivery(Pipeline([], no_app))), False
    )
    client = redis.Redis(port=redis_server.port)
    key = f"streamed-{secrets.token_hex(3)}"
    sink = StreamSink()
    try:
        with pytest.raises(CallError, match="app channel"):
            await block._subscribe(entry, [key])
        sub_id = await block._subscribe(entry, [key], sink)
        updates = aiter(sink.updates())
        await asyncio.to_thread(client.set, key, "1||v1")
        assert await asyncio.wait_for(anext(updates), 15) == Update(sub_id, STORE, key, Item("1", "v1"))
        await sink.release()
        assert sub_id not in block.subscriptions
        assert numsub(client, key) == 0
    finally:
        await block.close()

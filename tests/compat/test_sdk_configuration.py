"""Dapr's configuration API over gRPC, driven by the official SDK (`DaprClient`, sync and
`dapr.aio`) and the wheel's generated stubs, against real sidecars with no app and a real
redis-server: get, subscribe (updates made with redis-py arrive on the stream),
unsubscribe, closing the stream, Dapr's errors."""

from __future__ import annotations

import asyncio
import queue
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import redis
from dapr.aio.clients import DaprClient as AsyncDaprClient
from dapr.clients import DaprClient
from dapr.clients.grpc._response import ConfigurationResponse
from dapr.proto.runtime.v1 import configuration_pb2, dapr_pb2_grpc

from outrig.telemetry import StoredSpan, TraceStore, trace_store_path
from tests.redis_server import RedisServer
from tests.runtime.test_configuration_api import STORE, config_sidecar, numsub
from tests.runtime.test_tracing import wait_for_spans
from tests.support import Processes, component_yaml, resource_folder, take

Subscribe = configuration_pb2.SubscribeConfigurationRequest


def fresh(*names: str) -> list[str]:
    """Keys no other test touches (the Redis server is shared by the session)."""
    tag = secrets.token_hex(3)
    return [f"{name}-{tag}" for name in names]


def until(check: Callable[[], bool], what: str, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def delivery_span(home: Path, sub_id: str) -> StoredSpan:
    """The CONSUMER span of the first update of a subscription, from the local trace store."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if trace_store_path(home).exists():
            store = TraceStore(trace_store_path(home))
            try:
                for trace_id in store.recent_trace_ids(50):
                    for span in store.spans(trace_id):
                        if span.attributes.get("outrig.configuration.subscription") == sub_id:
                            return span
            finally:
                store.close()
        time.sleep(0.1)
    raise AssertionError(f"no delivery span for subscription {sub_id}")


def test_get_configuration_by_key_and_all_items(
    procs: Processes, redis_server: RedisServer, tmp_path: Path, point_sdk: Callable[..., str]
) -> None:
    client = redis.Redis(port=redis_server.port, db=0)
    one, two, plain = fresh("orderId1", "orderId2", "plain")
    client.mset({one: "101||1", two: "102||v2", plain: "no version"})
    sidecar = config_sidecar(procs, redis_server, "sdk-config-get", tmp_path)
    address = point_sdk(sidecar)
    with DaprClient(address) as dapr:
        some = dapr.get_configuration(STORE, [one, two, "missing-" + one])
        assert {k: (v.value, v.version, v.metadata) for k, v in some.items.items()} == {
            one: ("101", "1", {}),
            two: ("102", "v2", {}),
        }
        everything = dapr.get_configuration(STORE, [])
        assert {one, two, plain} <= set(everything.items)
        assert everything.items[plain].value == "no version" and everything.items[plain].version == ""
    with grpc.insecure_channel(address) as channel:  # the Alpha1 name answers the same
        alpha = dapr_pb2_grpc.DaprStub(channel).GetConfigurationAlpha1(
            configuration_pb2.GetConfigurationRequest(store_name=STORE, keys=[one])
        )
        assert {k: v.value for k, v in alpha.items.items()} == {one: "101"}


def test_sdk_subscription_gets_each_update_until_unsubscribed(
    procs: Processes, redis_server: RedisServer, tmp_path: Path, point_sdk: Callable[..., str]
) -> None:
    """No app port: updates go to the stream, in order of change, deletes as Dapr's HTTP
    shape; unsubscribing ends the stream and the Redis subscription."""
    client = redis.Redis(port=redis_server.port)
    a, b = fresh("a", "b")
    client.set(a, "0||0")
    sidecar = config_sidecar(procs, redis_server, "sdk-config-sub", tmp_path)
    got: queue.Queue[tuple[str, dict[str, tuple[str, str, dict[str, str]]]]] = queue.Queue()

    def handler(sub_id: str, response: ConfigurationResponse) -> None:
        items = {k: (v.value, v.version, dict(v.metadata or {})) for k, v in response.items.items()}
        got.put((sub_id, items))

    address = point_sdk(sidecar)
    with DaprClient(address) as dapr:
        sub_id = dapr.subscribe_configuration(STORE, [a, b], handler)
        assert sub_id, "the first message carries the subscription id"
        assert numsub(client, a) == 1 and numsub(client, b) == 1

        client.set(a, "1||v1")
        [first] = take(got, 1, within=15)  # the value is read when sent: wait, or the delete overtakes it
        client.set(b, "2||v2")
        [second] = take(got, 1, within=15)
        client.delete(a)
        [third] = take(got, 1, within=15)
        assert [first, second, third] == [
            (sub_id, {a: ("1", "v1", {})}),
            (sub_id, {b: ("2", "v2", {})}),
            (sub_id, {a: ("", "", {"deleted": "true"})}),
        ]

        assert dapr.unsubscribe_configuration(STORE, sub_id) is True
        until(lambda: numsub(client, a) == 0 and numsub(client, b) == 0, "the Redis subscription to end")
        assert dapr.unsubscribe_configuration(STORE, sub_id) is False
        client.set(a, "after||9")
        assert take(got, 1, within=0.5) == [], "no update after unsubscribe"


def test_closing_the_stream_unsubscribes_and_updates_are_traced(
    procs: Processes, redis_server: RedisServer, tmp_path: Path, point_sdk: Callable[..., str]
) -> None:
    client = redis.Redis(port=redis_server.port)
    [key] = fresh("k")
    sidecar = config_sidecar(procs, redis_server, "sdk-config-close", tmp_path)
    address = point_sdk(sidecar)
    with grpc.insecure_channel(address) as channel:
        stream = dapr_pb2_grpc.DaprStub(channel).SubscribeConfiguration(
            Subscribe(store_name=STORE, keys=[key])
        )
        first = next(stream)
        assert first.id and not first.items
        client.set(key, "1||v1")
        update = next(stream)
        assert update.id == first.id and update.items[key].value == "1"
        assert numsub(client, key) == 1
        stream.cancel()
        until(lambda: numsub(client, key) == 0, "the closed stream to end its subscription")
    with DaprClient(address) as dapr:  # the subscription is gone, not only its stream
        assert dapr.unsubscribe_configuration(STORE, first.id) is False

    process = delivery_span(procs.home, first.id)
    assert (process.kind, process.name, process.parent_id) == ("CONSUMER", f"process {STORE}", None)
    assert process.attributes["outrig.configuration.sink"] == "stream"
    assert process.attributes["outrig.configuration.key"] == key
    names = {span.name for span in wait_for_spans(procs.home, process.trace_id, 2)}
    assert f"MGET {STORE}" in names  # the value is read when the update is sent


def test_errors_as_dapr(
    procs: Processes, redis_server: RedisServer, tmp_path: Path, point_sdk: Callable[..., str]
) -> None:
    sidecar = config_sidecar(procs, redis_server, "sdk-config-errors", tmp_path)
    bare = procs.sidecar("sdk-config-bare")
    address = point_sdk(sidecar)
    with DaprClient(address) as dapr:
        with pytest.raises(grpc.RpcError) as unknown:
            dapr.get_configuration("nope", ["a"])
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "nope" in str(unknown.value.details()) and STORE in str(unknown.value.details())
        with pytest.raises(grpc.RpcError) as unsub_unknown:
            dapr.unsubscribe_configuration("nope", "some-id")
        assert unsub_unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with grpc.insecure_channel(address) as channel:
        stream = dapr_pb2_grpc.DaprStub(channel).SubscribeConfiguration(
            Subscribe(store_name="nope", keys=["a"])
        )
        with pytest.raises(grpc.RpcError) as refused:
            next(stream)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "configuration store nope not found" in str(refused.value.details())
    with DaprClient(point_sdk(bare)) as dapr:
        with pytest.raises(grpc.RpcError) as not_configured:
            dapr.get_configuration(STORE, ["a"])
        assert not_configured.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "not configured" in str(not_configured.value.details())


def test_async_client_and_stream(
    procs: Processes, redis_server: RedisServer, tmp_path: Path, point_sdk: Callable[..., str]
) -> None:
    """`dapr.aio`'s get and unsubscribe; the stream read with grpc.aio (the async client's
    own `subscribe_configuration` reads an aio stub from a thread, which cannot work: see
    docs/grpc.md)."""
    client = redis.Redis(port=redis_server.port)
    key, other = fresh("k", "other")
    client.set(key, "0||0")
    sidecar = config_sidecar(procs, redis_server, "sdk-config-aio", tmp_path)
    address = point_sdk(sidecar)

    async def scenario() -> None:
        async with AsyncDaprClient(address) as dapr:
            got = await dapr.get_configuration(STORE, [key])
            assert got.items[key].value == "0" and got.items[key].version == "0"
            async with grpc.aio.insecure_channel(address) as channel:
                stream = dapr_pb2_grpc.DaprStub(channel).SubscribeConfigurationAlpha1(
                    Subscribe(store_name=STORE, keys=[key, other])
                )
                updates = aiter(stream)
                first = await anext(updates)
                await asyncio.to_thread(client.set, other, "x||1")
                update = await anext(updates)
                assert (update.id, update.items[other].value, update.items[other].version) == (
                    first.id,
                    "x",
                    "1",
                )
                assert await dapr.unsubscribe_configuration(STORE, first.id) is True
                rest = [message async for message in updates]  # the stream ends, status OK
                assert rest == []
                assert await stream.code() == grpc.StatusCode.OK

    asyncio.run(scenario())
    assert numsub(client, key) == 0


def test_shutdown_ends_open_streams_with_ok(
    procs: Processes, redis_server: RedisServer, tmp_path: Path, point_sdk: Callable[..., str]
) -> None:
    """The sidecar ends its configuration streams before its gRPC server stops (as Dapr,
    status OK), so shutdown does not wait out the server's grace period on them."""
    client = redis.Redis(port=redis_server.port)
    [key] = fresh("k")
    sidecar = config_sidecar(procs, redis_server, "sdk-config-stop", tmp_path)
    with grpc.insecure_channel(point_sdk(sidecar)) as channel:
        stream = dapr_pb2_grpc.DaprStub(channel).SubscribeConfiguration(
            Subscribe(store_name=STORE, keys=[key])
        )
        assert next(stream).id
        sidecar.proc.terminate()
        assert list(stream) == []
        assert stream.code() == grpc.StatusCode.OK
        assert sidecar.proc.wait(15) == 0
    assert numsub(client, key) == 0


def test_api_token_guards_the_stream(procs: Processes, redis_server: RedisServer, tmp_path: Path) -> None:
    component = component_yaml(STORE, "configuration.redis", redisHost=redis_server.address)
    folder = resource_folder(tmp_path, {"config.yaml": component})
    sidecar = procs.sidecar(
        "sdk-config-token", extra_args=["--resources-path", str(folder)], env={"DAPR_API_TOKEN": "s3cret"}
    )
    request = Subscribe(store_name=STORE, keys=["k"])
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            next(stub.SubscribeConfiguration(request))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert refused.value.details() == "missing api token in request metadata"
        stream = stub.SubscribeConfiguration(request, metadata=[("dapr-api-token", "s3cret")])
        assert next(stream).id
        stream.cancel()

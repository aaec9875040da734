"""The limiter as middleware: answers, headers, keys, backpressure, failure modes, telemetry."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import SpanKind

from outrig.middleware import (
    Call,
    ErrorMapping,
    Hop,
    MiddlewareContext,
    Pipeline,
    PluginError,
    Result,
    plugins,
)
from outrig.middleware.ratelimit import ERR_RATE_LIMIT_UNAVAILABLE, ERR_RATE_LIMITED, DaprRateLimit, RateLimit
from outrig.middleware.testing import Recorder, capture_spans, make_call
from tests.redis_server import RedisServer
from tests.support import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def outrig_limit(clock: Clock | None = None, **metadata: str) -> RateLimit:
    config = plugins.validate_config("middleware.outrig.ratelimit", RateLimit.Config, metadata)
    return RateLimit(config, clock or time.monotonic)


async def through(limiter: Any, calls: list[Call], rest: Recorder | None = None) -> list[Result]:
    pipeline = Pipeline([ErrorMapping(), limiter], rest or Recorder())
    return [await pipeline(call) for call in calls]


def statuses(results: list[Result]) -> list[int]:
    return [r.status for r in results]


async def test_over_the_limit_is_429_with_retry_after_and_ratelimit_headers() -> None:
    clock = Clock()
    limiter = outrig_limit(clock, requestsPerSecond="2", burst="2")
    results = await through(limiter, [make_call() for _ in range(3)])
    assert statuses(results) == [200, 200, 429]
    refused = results[2]
    assert refused.error is not None and refused.error.code == ERR_RATE_LIMITED
    assert refused.error.status == 429
    assert dict(refused.headers) == {
        "Retry-After": "1", "RateLimit-Limit": "2", "RateLimit-Remaining": "0", "RateLimit-Reset": "1",
    }  # fmt: skip
    clock.now = 0.5
    assert statuses(await through(limiter, [make_call()])) == [200]


async def test_keys_by_caller_and_method() -> None:
    limiter = outrig_limit(Clock(), requestsPerSecond="1", burst="1", key="caller,method")
    calls = [
        make_call(caller="a", hop=Hop.PEER, subject="x"),
        make_call(caller="a", hop=Hop.PEER, subject="x"),
        make_call(caller="b", hop=Hop.PEER, subject="x"),
        make_call(caller="a", hop=Hop.PEER, subject="y"),
    ]
    assert statuses(await through(limiter, calls)) == [200, 429, 200, 200]


async def test_caller_on_the_app_api_is_the_sidecars_own_app() -> None:
    limiter = outrig_limit(Clock(), requestsPerSecond="1", burst="1", key="caller")
    await limiter.start(MiddlewareContext("orders", "limit"))
    results = await through(limiter, [make_call(), make_call(caller="orders", hop=Hop.PEER)])
    assert statuses(results) == [200, 429]


async def test_keys_by_identity_route_and_header() -> None:
    by_identity = outrig_limit(Clock(), requestsPerSecond="1", burst="1", key="identity")
    spiffe = "spiffe://public/ns/default/a"
    calls = [make_call(identity=spiffe), make_call(identity=spiffe), make_call(identity=None)]
    assert statuses(await through(by_identity, calls)) == [200, 429, 200]
    by_route = outrig_limit(Clock(), requestsPerSecond="1", burst="1", key="route")
    calls = [make_call(route="/a"), make_call(route="/b"), make_call(route="/a")]
    assert statuses(await through(by_route, calls)) == [200, 200, 429]
    by_header = outrig_limit(Clock(), requestsPerSecond="1", burst="1", key="header:X-Tenant")
    calls = [make_call(headers={"x-tenant": "t1"}), make_call(headers={"x-tenant": "t2"}),
             make_call(headers={"X-Tenant": "t1"})]  # fmt: skip
    assert statuses(await through(by_header, calls)) == [200, 200, 429]


def from_address(address: str, **headers: str) -> Call:
    call = make_call(headers=headers)
    call.attributes["client.address"] = address
    return call


def dapr_limit(**metadata: str) -> DaprRateLimit:
    config = plugins.validate_config("middleware.http.ratelimit", DaprRateLimit.Config, metadata)
    return DaprRateLimit(config, Clock())


async def test_dapr_type_keys_on_the_peer_address_with_a_burst_of_one_second() -> None:
    """As tollbooth's `RemoteAddr`: a forwarding header a client invents buys no new bucket."""
    limiter = dapr_limit(maxRequestsPerSecond="3")
    calls = [from_address("10.0.0.1") for _ in range(4)]
    calls.append(from_address("10.0.0.2"))
    calls.append(from_address("10.0.0.1", **{"X-Forwarded-For": "1.1.1.1, 9.9.9.9"}))
    calls.append(from_address("10.0.0.1", **{"X-Real-IP": "8.8.8.8"}))
    assert statuses(await through(limiter, calls)) == [200, 200, 200, 429, 200, 429, 429]


async def test_forwarding_headers_count_only_when_trusted() -> None:
    limiter = dapr_limit(maxRequestsPerSecond="1", trustForwardedHeaders="true")
    proxy = "10.0.0.9"
    calls = [
        from_address(proxy, **{"X-Forwarded-For": "6.6.6.6, 1.1.1.1"}),
        from_address(proxy, **{"X-Forwarded-For": "7.7.7.7, 1.1.1.1"}),  # same last entry
        from_address(proxy, **{"X-Forwarded-For": "2.2.2.2"}),
        from_address(proxy, **{"X-Real-IP": "3.3.3.3"}),
        from_address(proxy),
    ]
    assert statuses(await through(limiter, calls)) == [200, 429, 200, 200, 200]
    outrig = outrig_limit(
        Clock(), requestsPerSecond="1", burst="1", key="address", trustForwardedHeaders="true"
    )
    calls = [
        from_address(proxy, **{"X-Forwarded-For": "1.1.1.1"}),
        from_address(proxy, **{"X-Real-IP": "1.1.1.1"}),
    ]
    assert statuses(await through(outrig, calls)) == [200, 429]


def test_dapr_type_default_is_100_per_second() -> None:
    limiter = plugins.build("middleware.http.ratelimit", {})
    assert isinstance(limiter, DaprRateLimit)
    assert (limiter.settings.rate, limiter.settings.burst) == (100, 100)


@pytest.mark.parametrize(
    ("metadata", "field", "message"),
    [
        ({}, "requestsPerSecond", "Field required"),
        ({"requestsPerSecond": "0"}, "requestsPerSecond", "greater than 0"),
        ({"requestsPerSecond": "fast"}, "requestsPerSecond", "valid number"),
        ({"requestsPerSecond": "5", "burst": "0"}, "burst", "greater than or equal to 1"),
        ({"requestsPerSecond": "5", "key": "colour"}, "key", "unknown key kind 'colour'.*caller"),
        ({"requestsPerSecond": "5", "mode": "everywhere"}, "mode", "'local' or 'cluster'"),
        ({"requestsPerSecond": "5", "mode": "cluster"}, "redisHost", "required with mode 'cluster'"),
        ({"requestsPerSecond": "5", "mode": "cluster", "redisHost": "h:p"}, "redisHost", "host:port"),
        ({"requestsPerSecond": "5", "failureMode": "maybe"}, "failureMode", "'open', 'closed' or 'local'"),
        ({"requestsPerSecond": "5", "redisTimeout": "5"}, "redisTimeout", "missing unit"),
        ({"requestsPerSecond": "5", "colour": "red"}, "colour", "no setting 'colour'"),
    ],
)
def test_bad_settings_name_the_field_and_value(metadata: dict[str, str], field: str, message: str) -> None:
    with pytest.raises(PluginError, match=message) as raised:
        plugins.build("middleware.outrig.ratelimit", metadata)
    assert raised.value.field == field
    assert f"'{field}'" in str(raised.value)


def test_dapr_type_bad_rate_is_named() -> None:
    with pytest.raises(PluginError, match=r"'maxRequestsPerSecond'.*greater than 0.*'-1'"):
        plugins.build("middleware.http.ratelimit", {"maxRequestsPerSecond": "-1"})


def delivery(operation: str = "deliver", request: Any = None, block: str = "pubsub") -> Call:
    return make_call(block, operation, block, "orders", hop=Hop.APP_CHANNEL, request=request)


class Sleeps:
    """The limiter's sleep, on the test's clock: records each wait and moves time on."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


def delivering_limit(**metadata: str) -> tuple[RateLimit, Sleeps]:
    clock = Clock()
    limiter = outrig_limit(clock, **metadata)
    sleeps = Sleeps(clock)
    limiter.sleep = sleeps
    return limiter, sleeps


async def test_deliveries_wait_for_their_token_in_order_and_are_never_refused() -> None:
    limiter, sleeps = delivering_limit(requestsPerSecond="50", burst="1")
    rest = Recorder()
    results = await asyncio.gather(*(through(limiter, [delivery(request=i)], rest) for i in range(6)))
    assert all(r[0].status == 200 for r in results) and len(rest.calls) == 6
    # 1 at once, then each waiter sleeps off its own debt once: no herd waking together.
    assert sleeps.waits == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.10])
    assert [call.request for call in rest.calls] == list(range(6))  # first come, first served


@pytest.mark.parametrize(
    ("block", "operation"),
    [("configuration", "deliver"), ("bindings", "trigger"), ("bindings", "options"), ("pubsub", "deliver")],
)
async def test_every_delivery_to_the_app_waits_rather_than_being_refused(block: str, operation: str) -> None:
    """Configuration updates and binding events are lost if refused, as pub/sub messages."""
    limiter, sleeps = delivering_limit(requestsPerSecond="10", burst="1")
    results = await through(limiter, [delivery(operation, block=block) for _ in range(3)])
    assert statuses(results) == [200, 200, 200]
    assert sleeps.waits == pytest.approx([0.1, 0.2])


async def test_invoking_the_app_is_still_refused_over_the_limit() -> None:
    limiter, sleeps = delivering_limit(requestsPerSecond="10", burst="1")
    calls = [make_call(hop=Hop.APP_CHANNEL) for _ in range(2)]
    assert statuses(await through(limiter, calls)) == [200, 429] and sleeps.waits == []


async def test_a_batch_takes_a_token_per_message() -> None:
    limiter, sleeps = delivering_limit(requestsPerSecond="100", burst="4")
    results = await through(limiter, [delivery("deliver_bulk", request=[str(i) for i in range(10)])])
    assert statuses(results) == [200]
    assert sleeps.waits == pytest.approx([0.06])  # 4 at once, 6 more at 100/s
    assert statuses(await through(limiter, [delivery()])) == [200]
    assert sleeps.waits == pytest.approx([0.06, 0.07])  # the next one queues behind the batch


async def test_cluster_deliveries_reserve_their_tokens_in_redis(redis_server: RedisServer) -> None:
    limiter, sleeps = delivering_limit(
        requestsPerSecond="10", burst="1", mode="cluster", redisHost=redis_server.address,
        limitName=f"deliveries-{secrets.token_hex(3)}",
    )  # fmt: skip
    await limiter.start(MiddlewareContext("a", "deliveries"))
    results = await asyncio.gather(*(through(limiter, [delivery()]) for _ in range(3)))
    assert all(r[0].status == 200 for r in results)
    assert sorted(sleeps.waits) == pytest.approx([0.1, 0.2], abs=0.02)  # Redis's clock moves on a little
    await limiter.stop()


def unreachable_cluster(**metadata: str) -> RateLimit:
    nobody = f"127.0.0.1:{free_port()}"
    settings = {"requestsPerSecond": "1", "burst": "1", "mode": "cluster", "redisHost": nobody}
    return outrig_limit(None, **settings, **metadata)


async def test_unreachable_redis_fails_open_by_default_visibly() -> None:
    limiter = unreachable_cluster()
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    await limiter.start(MiddlewareContext("a", "shared", meter))
    with capture_spans() as captured:
        with captured.tracer.start_as_current_span("call", kind=SpanKind.SERVER):
            results = await through(limiter, [make_call() for _ in range(3)])
        assert statuses(results) == [200, 200, 200]
        assert captured.attributes()["outrig.ratelimit.store"] == "unavailable"
        assert captured.attributes()["outrig.ratelimit.decision"] == "unavailable_open"
        assert "rate limit store unavailable" in captured.events()
    assert limiter.shared is not None and not limiter.shared.up and limiter.shared.outages == 1
    points = {
        (metric.name, tuple(sorted(p.attributes.items())), p.value)  # type: ignore[union-attr]
        for rm in reader.get_metrics_data().resource_metrics  # type: ignore[union-attr]
        for sm in rm.scope_metrics
        for metric in sm.metrics
        for p in metric.data.data_points
    }
    labels = (("decision", "unavailable_open"), ("key_kind", "global"), ("limit", "shared"))
    assert ("outrig.ratelimit.decisions", labels, 3) in points
    assert ("outrig.ratelimit.store.up", (("limit", "shared"),), 0) in points
    await limiter.stop()


async def test_unreachable_redis_fails_closed_when_configured() -> None:
    limiter = unreachable_cluster(failureMode="closed")
    await limiter.start(MiddlewareContext("a", "shared"))
    results = await through(limiter, [make_call()])
    assert statuses(results) == [503]
    assert results[0].error is not None and results[0].error.code == ERR_RATE_LIMIT_UNAVAILABLE
    assert results[0].headers["Retry-After"] == "1"
    await limiter.stop()


async def test_unreachable_redis_falls_back_to_a_local_bucket_when_configured() -> None:
    limiter = unreachable_cluster(failureMode="local")
    await limiter.start(MiddlewareContext("a", "shared"))
    assert statuses(await through(limiter, [make_call(), make_call()])) == [200, 429]
    await limiter.stop()


async def test_limited_calls_are_marked_on_the_span() -> None:
    limiter = outrig_limit(Clock(), requestsPerSecond="1", burst="1", key="target")
    await limiter.start(MiddlewareContext("a", "per-target"))
    with capture_spans() as captured:
        with captured.tracer.start_as_current_span("call", kind=SpanKind.SERVER):
            await through(limiter, [make_call(), make_call()])
        attributes = captured.attributes()
        assert attributes["outrig.ratelimit.decision"] == "limited"
        assert attributes["outrig.ratelimit.limit"] == "per-target"
        assert attributes["outrig.ratelimit.key_kind"] == "target"
        assert "rate limited" in captured.events()


class Blackhole:
    """A "Redis" that accepts connections and never answers: counts the commands it got."""

    def __init__(self) -> None:
        self.received = b""
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                self.received += data
            writer.close()

        self.server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def commands(self, name: bytes) -> int:
        return self.received.count(name)


async def test_a_hung_redis_holds_one_probe_at_a_time_not_every_call() -> None:
    clock = Clock()
    blackhole = Blackhole()
    async with blackhole as address:
        settings = {"requestsPerSecond": "1", "burst": "1", "mode": "cluster", "redisHost": address,
                    "redisTimeout": "200ms"}  # fmt: skip
        limiter = outrig_limit(clock, **settings)
        await limiter.start(MiddlewareContext("a", "hung"))  # its PING times out: down
        assert limiter.shared is not None and not limiter.shared.up
        clock.now = 10.0  # past the retry interval: the next call probes
        probe = asyncio.create_task(through(limiter, [make_call()]))
        await asyncio.sleep(0.05)
        assert not probe.done()  # held by the hung Redis
        others = await through(limiter, [make_call() for _ in range(5)])
        assert statuses(others) == [200] * 5 and not probe.done()  # failed open without waiting
        assert statuses(await probe) == [200]
        assert blackhole.commands(b"EVALSHA") == 1
        await limiter.stop()


async def test_limiters_sharing_a_name_add_up_and_leave_the_metrics_at_stop() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    first = outrig_limit(Clock(), requestsPerSecond="1", burst="1", limitName="shared")
    second = outrig_limit(Clock(), requestsPerSecond="1", burst="1", limitName="shared")
    await first.start(MiddlewareContext("a", "one", meter))
    await second.start(MiddlewareContext("a", "two", meter))
    await through(first, [make_call(), make_call()])
    await through(second, [make_call(), make_call(), make_call()])

    def decisions() -> dict[str, float]:
        data = reader.get_metrics_data()
        return {
            str(p.attributes["decision"]): p.value  # type: ignore[union-attr]
            for rm in (data.resource_metrics if data is not None else [])
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == "outrig.ratelimit.decisions"
            for p in metric.data.data_points
            if p.attributes and p.attributes["limit"] == "shared"
        }

    assert decisions() == {"admitted": 2, "limited": 3}
    await first.stop()
    assert decisions() == {"admitted": 1, "limited": 2}
    await second.stop()
    assert decisions() == {}


def test_the_redis_password_stays_out_of_the_config_repr() -> None:
    config = plugins.validate_config(
        "middleware.outrig.ratelimit", RateLimit.Config,
        {"requestsPerSecond": "5", "mode": "cluster", "redisHost": "localhost:6379",
         "redisPassword": "s3cret"},
    )  # fmt: skip
    assert config.redisPassword == "s3cret" and "s3cret" not in repr(config)
    limiter = RateLimit(config)
    assert limiter.settings.redis is not None and limiter.settings.redis.password == "s3cret"
    assert (limiter.settings.redis.host, limiter.settings.redis.port) == ("localhost", 6379)
    assert limiter.settings.redis.read_timeout == limiter.settings.redis.dial_timeout == 0.5

"""Rate limits through real sidecars: accuracy under offered load (one sidecar, and three
sharing a cluster-wide limit on Redis), bursts, 429 headers on the wire, pub/sub
backpressure that loses nothing, and Redis killed and restarted under a shared limit.

Load comes from one asyncio loop (aiohttp) at a fixed schedule; what was admitted is
counted from the sidecars' answers (200 admitted, 429 limited) and checked against the
sidecar's own metrics. Bounds come from the limiter's promise: over any window, at most
`burst + rate * window` calls pass, and under sustained overload the count is
`rate * window` give or take the tokens held at the start.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
from multidict import CIMultiDict

from tests.redis_server import RedisServer
from tests.runtime.test_bindings_api import bindings_app, received
from tests.runtime.test_configured_pipeline import start_failure
from tests.runtime.test_metrics import scrape
from tests.support import Processes, Sidecar, component_yaml, deliveries, resource_folder


def pipeline_config(http: list[tuple[str, str]] = (), app: list[tuple[str, str]] = ()) -> str:  # type: ignore[assignment]
    def handlers(items: list[tuple[str, str]]) -> str:
        if not items:
            return " []"
        return "".join(f"\n      - name: {name}\n        type: {kind}" for name, kind in items)

    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: limits\nspec:\n"
        f"  httpPipeline:\n    handlers:{handlers(list(http))}\n"
        f"  appHttpPipeline:\n    handlers:{handlers(list(app))}\n"
    )


def limited_side(
    tmp_path: Path, folder: str, kind: str, metadata: dict[str, object], app: bool = False
) -> list[str]:
    """`--resources-path`/`--config` arguments putting one limiter named `limit` in the
    httpPipeline (or, with `app`, the appHttpPipeline)."""
    root = tmp_path / folder
    root.mkdir()
    resources = resource_folder(root, {"limit.yaml": component_yaml("limit", kind, **metadata)})
    handlers = [("limit", kind)]
    config = pipeline_config(app=handlers) if app else pipeline_config(http=handlers)
    (root / "config.yaml").write_text(config)
    return ["--resources-path", str(resources), "--config", str(root / "config.yaml")]


@dataclass
class Answers:
    """What the sidecars answered: (arrival time, status, headers) per request."""

    seen: list[tuple[float, int, CIMultiDict[str]]] = field(default_factory=list)

    def count(self, status: int) -> int:
        return sum(1 for _, s, _ in self.seen if s == status)

    def per_second(self, start: float, status: int = 200) -> list[int]:
        bins: dict[int, int] = {}
        for at, s, _ in self.seen:
            if s == status:
                bins[int(at - start)] = bins.get(int(at - start), 0) + 1
        return [bins.get(i, 0) for i in range(max(bins, default=-1) + 1)]


def forged() -> dict[str, str]:
    """A fresh made-up `X-Forwarded-For` per request: must not buy a fresh bucket."""
    return {"X-Forwarded-For": ".".join(str(b) for b in secrets.token_bytes(4))}


async def one(session: aiohttp.ClientSession, url: str, answers: Answers, forge: bool = False) -> None:
    async with session.post(url, data=b"{}", headers=forged() if forge else None) as reply:
        await reply.read()
        answers.seen.append((time.monotonic(), reply.status, CIMultiDict(reply.headers)))


async def offer(
    session: aiohttp.ClientSession, urls: list[str], rate_each: float, seconds: float, forge: bool = False
) -> Answers:
    """`rate_each` requests a second to each url for `seconds`, on a fixed schedule (each
    with a made-up `X-Forwarded-For` if `forge`)."""
    answers = Answers()
    start = time.monotonic()
    total = int(rate_each * seconds)
    tasks: list[asyncio.Task[None]] = []
    for i in range(total):
        delay = start + i / rate_each - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.extend(asyncio.create_task(one(session, url, answers, forge)) for url in urls)
    await asyncio.gather(*tasks)
    return answers


async def burst(session: aiohttp.ClientSession, urls: list[str], each: int) -> tuple[Answers, float]:
    """`each` requests to every url at once; the answers and how long they all took."""
    answers = Answers()
    start = time.monotonic()
    await asyncio.gather(*(one(session, url, answers) for url in urls for _ in range(each)))
    return answers, time.monotonic() - start


def admitted_metric(sidecar: Sidecar, decision: str = "admitted") -> float:
    samples = [(n, labels, v) for n, labels, v in scrape(sidecar) if n == "outrig_ratelimit_decisions_total"]
    return sum(v for _, labels, v in samples if labels.get("decision") == decision)


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))


def test_dapr_limit_admits_its_rate_of_three_times_as_much_offered(procs: Processes, tmp_path: Path) -> None:
    """Dapr's `middleware.http.ratelimit` at 100 req/s: a burst of one second's worth, then
    100 ± 5% a second under 300 offered, for 10 seconds, though every request claims another
    address in `X-Forwarded-For` (the limit keys on the peer address, as Dapr's)."""
    args = limited_side(tmp_path, "a", "middleware.http.ratelimit", {"maxRequestsPerSecond": 100})
    sidecar = procs.sidecar_with_echo("limited", extra_args=args)
    url = sidecar.invoke_url("limited", "work")

    async def scenario() -> tuple[Answers, float, Answers, float]:
        async with session() as s:
            burst_answers, burst_took = await burst(s, [url], 150)
            start = time.monotonic()
            steady = await offer(s, [url], 300, 10, forge=True)
            return burst_answers, burst_took, steady, time.monotonic() - start

    burst_answers, burst_took, steady, took = asyncio.run(scenario())
    # The burst: the full bucket (100), plus what refilled while the burst was answered.
    assert 100 <= burst_answers.count(200) <= 100 + 100 * burst_took + 1, (
        burst_answers.count(200),
        burst_took,
    )
    assert burst_answers.count(200) + burst_answers.count(429) == 150
    admitted = steady.count(200)
    assert steady.count(200) + steady.count(429) == 3000
    assert 950 <= admitted <= 1050, (admitted, took, steady.per_second(steady.seen[0][0]))
    assert admitted_metric(sidecar) == burst_answers.count(200) + admitted
    assert admitted_metric(sidecar, "limited") == burst_answers.count(429) + steady.count(429)
    refused = next(headers for _, status, headers in steady.seen if status == 429)
    assert refused["Retry-After"] == "1" and refused["RateLimit-Limit"] == "100"
    assert refused["RateLimit-Remaining"] == "0" and int(refused["RateLimit-Reset"]) >= 1


def cluster_limit(redis: RedisServer, name: str, rate: int, burst: int, **extra: object) -> dict[str, object]:
    return {
        "requestsPerSecond": rate, "burst": burst, "mode": "cluster", "redisHost": redis.address,
        "limitName": name, **extra,
    }  # fmt: skip


def test_three_sidecars_share_one_cluster_wide_limit(
    procs: Processes, tmp_path: Path, redis_server: RedisServer
) -> None:
    """150 req/s shared through Redis by three sidecars offered 100 req/s each: 150 ± 5% a
    second in total; the configured burst (45) is shared too."""
    name = f"shared-{secrets.token_hex(3)}"
    metadata = cluster_limit(redis_server, name, 150, 45)
    kind = "middleware.outrig.ratelimit"
    sidecars = [
        procs.sidecar_with_echo(f"node-{i}", extra_args=limited_side(tmp_path, f"n{i}", kind, metadata))
        for i in range(3)
    ]
    urls = [s.invoke_url(s.app_id, "work") for s in sidecars]

    async def scenario() -> tuple[Answers, float, Answers, float]:
        async with session() as s:
            burst_answers, burst_took = await burst(s, urls, 30)
            start = time.monotonic()
            steady = await offer(s, urls, 100, 10)
            return burst_answers, burst_took, steady, time.monotonic() - start

    burst_answers, burst_took, steady, took = asyncio.run(scenario())
    assert 45 <= burst_answers.count(200) <= 45 + 150 * burst_took + 1, (burst_answers.count(200), burst_took)
    admitted = steady.count(200)
    assert steady.count(200) + steady.count(429) == 3000
    assert 1425 <= admitted <= 1575, (admitted, took, steady.per_second(steady.seen[0][0]))
    per_sidecar = [admitted_metric(s) for s in sidecars]
    assert sum(per_sidecar) == burst_answers.count(200) + admitted
    assert all(n > 0 for n in per_sidecar), per_sidecar


def subscription(route: str) -> list[dict[str, object]]:
    return [{"pubsubname": "pubsub", "topic": "orders", "route": route}]


def test_a_limited_subscription_receives_every_message_at_the_rate(procs: Processes, tmp_path: Path) -> None:
    """Deliveries wait for tokens (20/s, burst 2): none refused or lost, never faster."""
    _, app_port = procs.subscriber_app(subscription("/orders"))
    args = limited_side(tmp_path, "sub", "middleware.outrig.ratelimit",
                        {"requestsPerSecond": 20, "burst": 2}, app=True)  # fmt: skip
    sidecar = procs.sidecar("subscriber", app_port=app_port, extra_args=args)
    count = 40
    with httpx.Client(timeout=30) as client:
        start = time.monotonic()
        for i in range(count):
            reply = client.post(sidecar.url("/v1.0/publish/pubsub/orders"), json={"n": i})
            assert reply.status_code == 204, reply.text
        progress: list[tuple[float, int]] = []
        deadline = start + 30
        while time.monotonic() < deadline:
            got = len(deliveries(app_port))
            progress.append((time.monotonic() - start, got))
            if got >= count:
                break
            time.sleep(0.2)
    received = deliveries(app_port)
    assert sorted(r["event"]["data"]["n"] for r in received if r["attempt"] == 1) == list(range(count))
    assert all(r["attempt"] == 1 for r in received), "a limited delivery was refused and sent again"
    # Never faster than the limit: by any moment, at most burst + rate * elapsed delivered.
    assert all(got <= 2 + 20 * elapsed + 1 for elapsed, got in progress), progress
    assert progress[-1][0] >= (count - 2) / 20 * 0.95, progress
    assert admitted_metric(sidecar, "delayed") > 0


def test_a_limited_input_binding_waits_rather_than_losing_events(procs: Processes, tmp_path: Path) -> None:
    """Binding events (and the binding's OPTIONS probe) on the app channel wait for their
    token like pub/sub deliveries: delayed, never refused."""
    app_port = bindings_app(procs, ["tick"], {})
    kind = "middleware.outrig.ratelimit"
    resources = resource_folder(tmp_path, {
        "limit.yaml": component_yaml("limit", kind, requestsPerSecond=0.5, burst=1),
        "tick.yaml": component_yaml("tick", "bindings.cron", schedule="@every 1s"),
    })  # fmt: skip
    (tmp_path / "config.yaml").write_text(pipeline_config(app=[("limit", kind)]))
    args = ["--resources-path", str(resources), "--config", str(tmp_path / "config.yaml")]
    sidecar = procs.sidecar("ticking", app_port=app_port, extra_args=args)
    ticks = received(app_port, 2, "tick")
    assert len(ticks) >= 2, ticks
    assert admitted_metric(sidecar, "delayed") >= 1  # ticks come every 1 s, tokens every 2 s
    assert admitted_metric(sidecar, "limited") == 0, "a binding event was refused"


def test_killing_redis_fails_open_or_closed_as_configured_and_recovers(
    procs: Processes, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        open_args = limited_side(tmp_path, "open", "middleware.outrig.ratelimit",
                                 cluster_limit(redis, "open", 20, 5, failureMode="open"))  # fmt: skip
        closed_args = limited_side(tmp_path, "closed", "middleware.outrig.ratelimit",
                                   cluster_limit(redis, "closed", 20, 5, failureMode="closed"))  # fmt: skip
        fails_open = procs.sidecar_with_echo("fails-open", extra_args=open_args)
        fails_closed = procs.sidecar_with_echo("fails-closed", extra_args=closed_args)
        urls = [fails_open.invoke_url("fails-open", "w"), fails_closed.invoke_url("fails-closed", "w")]

        async def phase(seconds: float) -> tuple[Answers, Answers]:
            async with session() as s:
                results = await asyncio.gather(*(offer(s, [u], 60, seconds) for u in urls))
                return results[0], results[1]

        up_open, up_closed = asyncio.run(phase(1))
        for answers in (up_open, up_closed):
            assert 5 <= answers.count(200) <= 5 + 20 * 1.5 + 1 and answers.count(429) > 0

        redis.kill()
        down_open, down_closed = asyncio.run(phase(1))
        assert down_open.count(200) == 60, "failing open admits every call while Redis is down"
        assert down_closed.count(503) == 60, "failing closed refuses every call while Redis is down"

        redis.start()
        recovered = False
        deadline = time.monotonic() + 15
        while not recovered and time.monotonic() < deadline:
            after_open, after_closed = asyncio.run(phase(0.5))
            recovered = (
                after_open.count(429) > 0 and after_closed.count(200) > 0 and after_closed.count(503) == 0
            )
        assert recovered, "the shared limit did not apply again after Redis returned"
        for answers in (after_open, after_closed):
            assert answers.count(200) <= 5 + 20 * 1.0 + 1, answers.count(200)
        for sidecar, mode in ((fails_open, "unavailable_open"), (fails_closed, "unavailable_closed")):
            assert admitted_metric(sidecar, mode) >= 60
            up = [v for n, labels, v in scrape(sidecar) if n == "outrig_ratelimit_store_up"]
            assert up == [1.0]
            log = sidecar.output()
            assert log.count("is unreachable") == 1, log  # once per outage, not per call
            assert log.count("is reachable again") == 1, log
    finally:
        redis.stop()


def test_bad_limit_settings_stop_startup_naming_file_field_and_value(tmp_path: Path) -> None:
    args = limited_side(tmp_path, "bad", "middleware.outrig.ratelimit",
                        {"requestsPerSecond": 10, "mode": "cluster"})  # fmt: skip
    output = start_failure(tmp_path, *args)
    assert "limit.yaml" in output and "redisHost" in output and "required with mode 'cluster'" in output

"""Pub/sub publish -> deliver through Redis: redis-py straight to a stream vs two outrig sidecars.

Both paths are measured in the same run, on the same redis-server, by the same load
generator, with the same payloads (default 1 KB JSON) and the same offered load. By
default a fixed rate (500 msg/s for 20 s), spread evenly over 16 connections, each message
sent at its scheduled time (as Fortio's `-uniform`):

- direct: redis-py `XADD` to a stream on a pool of 16 connections; a consumer process
  (what an app would run without a sidecar) reads it with `XREADGROUP COUNT 100 BLOCK`
  and acknowledges each batch it read with one `XACK`;
- outrig: aiohttp `POST /v1.0/publish/pubsub/bench` to sidecar A (no app, so no
  subscriptions); sidecar B, another app id (so its consumer group gets every message),
  POSTs each CloudEvent to a subscriber app (aiohttp, a process of its own) that answers
  `{"status": "SUCCESS"}`. Both sidecars have the same `pubsub.redis` component
  (`concurrency` 100).

End-to-end latency runs from a message's send time, carried in its payload, to the moment
the consumer or the app has it (CLOCK_MONOTONIC is shared by every process of the
machine); publish latency from the send to the reply (`XADD` vs the publish API's 204).
Sends follow the timetable, not the replies: a send that could not go out on time because
its connection's previous reply came back late is counted in the `late` column (as state.py,
so coordinated omission shows instead of hiding). Each message carries a sequence number:
losses (published, never delivered) and duplicates are counted. Each process's CPU (a
sidecar's with its telemetry agent) and peak RSS come from /proc.

`--saturate`: no rate; each connection publishes as fast as it can for the duration, then
the backlog drains; prints messages delivered per second, direct and through outrig, and
their ratio.

    python benchmarks/pubsub.py [--rate 500] [--seconds 20] [--connections 16] [--payload 1024]
                                [--saturate] [--concurrency 100] [--sampling 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvloop
from aiohttp import web
from common import children, cpu_seconds, free_port, peak_rss_mb, wait_healthy
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError, ResponseError

PUBSUB = "pubsub"
TOPIC = "bench"
STREAM = "bench-direct"
GROUP = "bench-direct"
WARMUP_SECONDS = 2.0
STALL_SECONDS = 10.0
"""Draining stops when nothing more arrived for this long: what is missing then is lost."""
SUCCESS = b'{"status":"SUCCESS"}'


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")


def payload(run: str, seq: int, sent: float, size: int) -> bytes:
    """A JSON object of `size` bytes (or the smallest possible) naming its run, number and send time."""
    head = json.dumps({"run": run, "seq": seq, "t": sent, "pad": ""}, separators=(",", ":"))
    return (head[:-2] + "x" * max(0, size - len(head)) + '"}').encode()


# --- the receiving side: a process of its own (subscriber app, or direct consumer) ----------


@dataclass
class Arrivals:
    seqs: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    unique: set[int] = field(default_factory=set)
    last: float = 0.0


async def serve(port: int, redis_port: int | None) -> None:
    """The subscriber app behind sidecar B or, with `redis_port`, the direct consumer; both
    answer `GET /stats?run=R` with what arrived for run R."""
    runs: dict[str, Arrivals] = {}
    malformed = 0

    def record(raw: Any, now: float) -> None:
        nonlocal malformed
        try:
            data = json.loads(raw) if isinstance(raw, bytes | str) else raw
            run, seq, sent = data["run"], int(data["seq"]), float(data["t"])
        except (ValueError, TypeError, KeyError):
            malformed += 1
            return
        arrivals = runs.setdefault(run, Arrivals())
        arrivals.seqs.append(seq)
        arrivals.latencies_ms.append((now - sent) * 1000)
        arrivals.unique.add(seq)
        arrivals.last = now

    async def subscribe(request: web.Request) -> web.Response:
        return web.json_response([{"pubsubname": PUBSUB, "topic": TOPIC, "route": f"/{TOPIC}"}])

    async def deliver(request: web.Request) -> web.Response:
        nonlocal malformed
        now = time.monotonic()
        try:
            event = json.loads(await request.read())
            record(event["data"], now)
        except (ValueError, TypeError, KeyError):
            malformed += 1
        return web.Response(body=SUCCESS, content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        a = runs.get(request.query["run"]) or Arrivals()
        if "brief" in request.query:
            return web.json_response({"unique": len(a.unique), "last": a.last})
        return web.json_response(
            {"seqs": a.seqs, "latencies_ms": a.latencies_ms, "last": a.last, "malformed": malformed}
        )

    async def ready(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def consume(client: Redis) -> None:
        while True:
            reply = await client.xreadgroup(GROUP, "direct-1", {STREAM: ">"}, count=100, block=1000)
            if not reply:
                continue
            now = time.monotonic()
            entries = reply[0][1]
            for _, fields in entries:
                record(fields.get(b"data", b""), now)
            await client.xack(STREAM, GROUP, *(entry_id for entry_id, _ in entries))

    app = web.Application()
    app.router.add_get("/dapr/subscribe", subscribe)
    app.router.add_post(f"/{TOPIC}", deliver)
    app.router.add_get("/stats", stats)
    app.router.add_get("/ready", ready)
    consumer: asyncio.Task[None] | None = None
    if redis_port is not None:
        client = Redis(host="127.0.0.1", port=redis_port)
        try:
            await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
        consumer = asyncio.create_task(consume(client))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await (consumer or asyncio.Event().wait())


# --- the load generator ---------------------------------------------------------------------


@dataclass
class Published:
    ok: list[int]
    latencies_ms: list[float]
    errors: int
    first_error: str
    late: int
    start: float
    seconds: float


Op = Callable[[bytes], Awaitable[bool]]


class PublishError(Exception):
    """The publish API answered something else than 204."""


async def publish(
    op: Op, run: str, rate: int | None, seconds: float, connections: int, size: int
) -> Published:
    """`connections` workers; with a rate, each sends rate/connections messages a second,
    evenly spaced, on a fixed timetable; without, each sends as fast as its replies come."""
    ok: list[int] = []
    latencies: list[float] = []
    errors = late = 0
    first_error = ""
    start = time.monotonic() + 0.05
    end = start + seconds
    counter = itertools.count()

    async def attempt(seq: int) -> None:
        nonlocal errors, first_error
        sent = time.monotonic()
        body = payload(run, seq, sent, size)
        try:
            done = await op(body)
            error = "" if done else "unexpected reply"
        except (PublishError, TimeoutError, aiohttp.ClientError, RedisError, OSError) as exc:
            done, error = False, f"{type(exc).__name__}: {exc}"
        if done:
            latencies.append((time.monotonic() - sent) * 1000)
            ok.append(seq)
        else:
            errors += 1
            first_error = first_error or error

    async def paced(index: int) -> None:
        nonlocal late
        assert rate is not None
        interval = connections / rate
        due = start + interval * index / connections
        seq = index
        while due < end:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.001:
                late += 1
            await attempt(seq)
            due += interval
            seq += connections

    async def flood(index: int) -> None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        while time.monotonic() < end:
            await attempt(next(counter))

    worker = flood if rate is None else paced
    await asyncio.gather(*(worker(i) for i in range(connections)))
    return Published(ok, latencies, errors, first_error, late, start, time.monotonic() - start)


@dataclass
class Phase:
    published: Published
    seqs: list[int]
    latencies_ms: list[float]
    last: float
    malformed: int
    cpu: dict[str, float]
    """CPU seconds each watched process used over the phase."""

    @property
    def delivered(self) -> int:
        return len(set(self.seqs) & set(self.published.ok))

    @property
    def lost(self) -> int:
        return len(set(self.published.ok) - set(self.seqs))

    @property
    def duplicates(self) -> int:
        return len(self.seqs) - len(set(self.seqs))

    @property
    def unexpected(self) -> int:
        """Delivered although its publish call failed (allowed: at-least-once)."""
        return len(set(self.seqs) - set(self.published.ok))

    @property
    def delivered_rate(self) -> float:
        span = self.last - self.published.start
        return len(set(self.seqs)) / span if span > 0 else float("nan")


async def drain(http: aiohttp.ClientSession, stats_url: str, run: str, expected: int) -> dict[str, Any]:
    """Wait until every message published has arrived, or nothing more arrives for a while."""
    seen, still_since = -1, time.monotonic()
    while True:
        async with http.get(stats_url, params={"run": run, "brief": "1"}) as reply:
            brief = await reply.json()
        now = time.monotonic()
        if brief["unique"] >= expected:
            break
        if brief["unique"] != seen:
            seen, still_since = brief["unique"], now
        elif now - still_since > STALL_SECONDS:
            break
        await asyncio.sleep(0.05)
    async with http.get(stats_url, params={"run": run}) as reply:
        full: dict[str, Any] = await reply.json()
    return full


async def phase(
    http: aiohttp.ClientSession, op: Op, run: str, stats_url: str, args: argparse.Namespace,
    watch: dict[str, int], seconds: float,
) -> Phase:  # fmt: skip
    before = {name: cpu_seconds(pid) for name, pid in watch.items()}
    rate = None if args.saturate else args.rate
    published = await publish(op, run, rate, seconds, args.connections, args.payload)
    arrived = await drain(http, stats_url, run, len(published.ok))
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in watch.items()}
    return Phase(
        published, arrived["seqs"], arrived["latencies_ms"], arrived["last"], arrived["malformed"], cpu
    )


async def measure(
    args: argparse.Namespace, redis_port: int, a_port: int, consumer_port: int, app_port: int,
    pids: dict[str, int],
) -> dict[str, Phase]:  # fmt: skip
    pool = BlockingConnectionPool(host="127.0.0.1", port=redis_port, max_connections=args.connections)
    direct = Redis.from_pool(pool)
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.connections))
    stats = aiohttp.ClientSession()
    url = f"http://127.0.0.1:{a_port}/v1.0/publish/{PUBSUB}/{TOPIC}"
    headers = {"content-type": "application/json"}

    async def xadd(body: bytes) -> bool:
        await direct.xadd(STREAM, {"data": body})
        return True

    async def post(body: bytes) -> bool:
        async with http.post(url, data=body, headers=headers) as reply:
            answer = await reply.read()
            if reply.status != 204:
                raise PublishError(f"HTTP {reply.status}: {answer[:300].decode(errors='replace')}")
            return True

    results: dict[str, Phase] = {}
    try:
        for name, op, port, watch in (
            ("direct", xadd, consumer_port, ["consumer"]),
            ("outrig", post, app_port, ["sidecar A", "sidecar B", "app"]),
        ):
            stats_url = f"http://127.0.0.1:{port}/stats"
            warm = await phase(stats, op, f"warm-{name}", stats_url, args, {}, WARMUP_SECONDS)
            if warm.lost or warm.published.errors:
                print(f"warm-up {name}: {warm.published.errors} publish errors, {warm.lost} lost",
                      file=sys.stderr)  # fmt: skip
            results[name] = await phase(
                stats, op, name, stats_url, args, {w: pids[w] for w in watch}, args.seconds
            )
    finally:
        await http.close()
        await stats.close()
        await direct.aclose()
    return results


# --- processes and the report ---------------------------------------------------------------


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def wait_subscribed(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            subs = httpx.get(f"http://127.0.0.1:{port}/v1.0/metadata", timeout=1).json().get("subscriptions")
            if any(s.get("topic") == TOPIC for s in subs or []):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"sidecar B (port {port}) did not subscribe to topic {TOPIC} in 30s")


def stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Sidecars first, then the apps, Redis last (so no sidecar sees Redis go away)."""
    agents: dict[int, bytes] = {}
    for proc in procs.values():
        with contextlib.suppress(OSError):
            agents |= {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children(proc.pid)}
    sidecars = [name for name in procs if name.startswith("sidecar")]
    apps = [name for name in procs if name not in sidecars and name != "redis"]
    for group in (sidecars, apps, [name for name in procs if name == "redis"]):
        for name in group:
            if procs[name].poll() is None:
                procs[name].terminate()
        for name in group:
            try:
                procs[name].wait(10)
            except subprocess.TimeoutExpired:
                procs[name].kill()
                procs[name].wait()
    for pid, cmdline in agents.items():  # a sidecar's telemetry agent its sidecar left behind
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                os.kill(pid, signal.SIGKILL)


def report(args: argparse.Namespace, results: dict[str, Phase], rss: dict[str, tuple[float, float]]) -> None:
    direct, via = results["direct"], results["outrig"]
    load = (
        f"as fast as {args.connections} connections go, for {args.seconds:.0f}s"
        if args.saturate
        else f"{args.rate} msg/s for {args.seconds:.0f}s over {args.connections} connections"
    )
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load generator, Redis, sidecars, app and consumer share it"
    )
    print(
        f"load: {load}, {len(payload('', 0, 0.0, args.payload))} B JSON payloads; pubsub.redis "
        f"concurrency {args.concurrency}, tracing samplingRate {args.sampling}\n"
    )
    names = {"direct": "direct (redis-py)", "outrig": "through outrig"}
    print(f"{'':20}{'published':>10}{'errors':>8}{'late':>7}{'delivered':>10}{'lost':>6}{'dup':>5}"
          f"{'pub/s':>8}{'deliv/s':>9}")  # fmt: skip
    for key, ph in results.items():
        pub = ph.published
        print(
            f"{names[key]:20}{len(pub.ok):10d}{pub.errors:8d}{pub.late:7d}{ph.delivered:10d}{ph.lost:6d}"
            f"{ph.duplicates:5d}{len(pub.ok) / pub.seconds:8.0f}{ph.delivered_rate:9.0f}"
        )
    print(
        "(late: sent more than 1 ms behind schedule; lost: published, never delivered; dup: delivered twice)"
    )
    for key, ph in results.items():
        if ph.published.first_error:
            print(f"{names[key]}: first publish error: {ph.published.first_error}")
        if ph.unexpected or ph.malformed:
            print(f"{names[key]}: {ph.unexpected} delivered although their publish failed, "
                  f"{ph.malformed} malformed deliveries")  # fmt: skip
    if args.saturate:
        ratio = via.delivered_rate / direct.delivered_rate
        print(f"\nthroughput, delivered msg/s: outrig/direct = {ratio:.3f} "
              f"({via.delivered_rate:.0f} vs {direct.delivered_rate:.0f})")  # fmt: skip

    def table(title: str, rows: dict[str, list[float]]) -> None:
        print(f"\n{title:34}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
        (d_name, d), (v_name, v) = rows.items()
        for name, values in ((d_name, d), (v_name, v)):
            print(f"{name:34}" + "".join(f"{pct(values, p):9.2f}" for p in (50, 90, 99, 100)))
        print(f"{'added by outrig':34}" + "".join(f"{pct(v, p) - pct(d, p):9.2f}" for p in (50, 90, 99, 100)))
        print(
            f"{'ratio outrig/direct':34}"
            + "".join(f"{pct(v, p) / pct(d, p):9.2f}" for p in (50, 90, 99, 100))
        )

    table(
        "end to end (send -> consumer/app)",
        {
            "direct: XADD -> XREADGROUP": direct.latencies_ms,
            "outrig: A -> Redis -> B -> app": via.latencies_ms,
        },
    )
    table(
        "publish call (send -> reply)",
        {
            "direct: XADD": direct.published.latencies_ms,
            "outrig: POST to sidecar A": via.published.latencies_ms,
        },
    )
    if args.saturate:
        print("(saturated: end-to-end latency is mostly time queued in the stream)")

    print(f"\n{'CPU and memory':20}{'mCPU':>8}{'per 1k msg/s':>14}{'peak RSS MB':>13}{'+ agent MB':>12}")
    for key, ph in results.items():
        seconds = ph.last - ph.published.start
        delivered = len(set(ph.seqs)) or 1
        for name, used in ph.cpu.items():
            label = "direct consumer" if key == "direct" else name
            mem = (f"{rss[name][0]:13.1f}{rss[name][1]:12.1f}" if name.startswith("sidecar")
                   else f"{rss[name][0]:13.1f}")  # fmt: skip
            print(f"{label:20}{used / seconds * 1000:8.0f}{used * 1e6 / delivered:14.0f}{mem}")
    print("(mCPU: average from publish start to last delivery; per 1k msg/s: CPU per 1,000 messages\n"
          " a second; a sidecar's CPU and memory include its telemetry agent's)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=500, help="offered msg/s (default 500)")
    parser.add_argument("--seconds", type=float, default=20, help="per path (default 20)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--payload", type=int, default=1024, help="JSON payload bytes (default 1024)")
    parser.add_argument("--saturate", action="store_true", help="max throughput instead of a fixed rate")
    parser.add_argument("--concurrency", type=int, default=100, help="pubsub.redis concurrency (default 100)")
    parser.add_argument("--sampling", default="0", help="tracing samplingRate for the sidecars (default 0)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--consume-redis", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve(args.serve, args.consume_redis))
        return

    redis_bin = shutil.which("redis-server") or sys.exit("no redis-server: run scripts/install-redis.sh")
    home = Path(tempfile.mkdtemp(prefix="outrig-bench-pubsub-"))
    env = dict(os.environ, OUTRIG_HOME=str(home))
    redis_port, consumer_port, app_port = free_port(), free_port(), free_port()
    a_port, b_port = free_port(), free_port()
    resources = home / "resources"
    resources.mkdir()
    (resources / "pubsub.yaml").write_text(
        f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {PUBSUB}\nspec:\n"
        "  type: pubsub.redis\n  version: v1\n  metadata:\n"
        f'  - name: redisHost\n    value: "127.0.0.1:{redis_port}"\n'
        f'  - name: concurrency\n    value: "{args.concurrency}"\n'
    )
    config = home / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: bench\nspec:\n"
        f'  tracing:\n    samplingRate: "{args.sampling}"\n'
    )
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}

    def spawn(name: str, command: list[str]) -> subprocess.Popen[bytes]:
        logs[name] = home / f"{name.replace(' ', '-')}.log"
        with logs[name].open("wb") as log:
            procs[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        return procs[name]

    results: dict[str, Phase] = {}
    rss: dict[str, tuple[float, float]] = {}
    output: dict[str, list[str]] = {}
    try:
        redis = spawn("redis", [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1",
                                "--dir", str(home), "--save", "", "--appendonly", "no"])  # fmt: skip
        wait_port(redis_port, redis)
        me = [sys.executable, str(Path(__file__).resolve()), "--serve"]
        spawn("consumer", [*me, str(consumer_port), "--consume-redis", str(redis_port)])
        spawn("app", [*me, str(app_port)])
        for name, app_id, port, extra in (
            ("sidecar B", "bench-sub", b_port, ["--app-port", str(app_port)]),
            ("sidecar A", "bench-pub", a_port, []),
        ):
            spawn(name, [sys.executable, "-m", "outrig.runtime", "run", "--app-id", app_id,
                         "--dapr-http-port", str(port), "--dapr-grpc-port", str(free_port()),
                         "--metrics-port", str(free_port()), "--resources-path", str(resources),
                         "--config", str(config), "--log-level", "warn", *extra])  # fmt: skip
        wait_healthy(consumer_port, "/ready")
        wait_healthy(app_port, "/ready")
        wait_healthy(b_port)
        wait_healthy(a_port)
        wait_subscribed(b_port)
        pids = {name: proc.pid for name, proc in procs.items()}
        results = uvloop.run(measure(args, redis_port, a_port, consumer_port, app_port, pids))
        for name in ("sidecar A", "sidecar B", "app", "consumer"):
            pid = pids[name]
            rss[name] = (peak_rss_mb(pid), sum(peak_rss_mb(c) for c in children(pid)))
    finally:
        stop(procs)
        output = {name: process_output(path) for name, path in logs.items() if name != "redis"}
        shutil.rmtree(home, ignore_errors=True)
        if not results:  # failed or interrupted: what the processes said may tell why
            print_output(output)
    report(args, results, rss)
    print_output(output)


def process_output(path: Path) -> list[str]:
    """What a process printed, without a sidecar's `... ready` line."""
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [line for line in lines if not (line.startswith("outrig: '") and "' ready, " in line)]


def print_output(output: dict[str, list[str]]) -> None:
    for name, lines in output.items():
        if lines:
            shown = "\n  ".join(lines[:20])
            more = f"\n  ... {len(lines) - 20} more lines" if len(lines) > 20 else ""
            print(f"\n{name} printed {len(lines)} lines:\n  {shown}{more}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; every process it started is stopped")

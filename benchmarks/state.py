"""State get/save overhead: redis-py straight to Redis vs Dapr's state API through a sidecar.

One load generator for both paths, in the same run, so their client costs are alike:
fixed rate (default 1,000 req/s), spread evenly over 16 connections, each request sent
at its scheduled time (as Fortio's `-uniform`), latency from send to full reply. The
direct path is what an app would do without a sidecar: redis-py `HMGET` for a get, `HSET`
for a save, on a pool of 16 connections. The sidecar path is aiohttp on 16 connections to
`GET /v1.0/state/{store}/{key}` and `POST /v1.0/state/{store}` with a `state.redis`
component on the same server. Prints p50/p90/p99, what the sidecar adds, its CPU per
1,000 req/s, next to Dapr 1.17's published state-get figure.

    python benchmarks/state.py [--rate 1000] [--seconds 20] [--connections 16] [--sampling 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import uvloop
from common import cpu_seconds, free_port, wait_healthy
from redis.asyncio import BlockingConnectionPool, Redis

DAPR_117_GET = {"p50": 0.28, "p99": 0.98}
VALUE = '{"customer":"c-42","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"total":31.5}'


@dataclass
class Run:
    latencies_ms: list[float]
    errors: int
    seconds: float

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")

    @property
    def qps(self) -> float:
        return (len(self.latencies_ms) + self.errors) / self.seconds


async def fixed_rate(
    op: Callable[[int], Awaitable[bool]], rate: int, seconds: float, connections: int
) -> Run:
    """`connections` workers, each sending rate/connections requests a second, evenly spaced."""
    latencies: list[float] = []
    errors = 0
    interval = connections / rate
    start = time.perf_counter() + 0.05
    end = start + seconds

    async def worker(index: int) -> None:
        nonlocal errors
        due = start + interval * index / connections
        n = index
        while due < end:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            ok = await op(n)
            if ok:
                latencies.append((time.perf_counter() - sent) * 1000)
            else:
                errors += 1
            due += interval
            n += connections

    await asyncio.gather(*(worker(i) for i in range(connections)))
    return Run(latencies, errors, time.perf_counter() - start)


async def measure(
    args: argparse.Namespace, redis_port: int, sidecar_port: int, sidecar_pid: int
) -> dict[str, tuple[Run, float]]:
    pool = BlockingConnectionPool(host="127.0.0.1", port=redis_port, max_connections=args.connections)
    direct = Redis.from_pool(pool)
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.connections))
    base = f"http://127.0.0.1:{sidecar_port}/v1.0/state/statestore"
    keys = 1000
    body = VALUE.encode()

    async def direct_get(n: int) -> bool:
        data, _ = await direct.hmget(f"bench||k{n % keys}", ["data", "version"])
        return data is not None

    async def direct_save(n: int) -> bool:
        await direct.hset(f"bench||k{n % keys}", mapping={"data": body})
        return True

    async def sidecar_get(n: int) -> bool:
        async with http.get(f"{base}/k{n % keys}") as reply:
            await reply.read()
            return reply.status == 200

    async def sidecar_save(n: int) -> bool:
        item = b'[{"key":"k%d","value":%s}]' % (n % keys, body)
        async with http.post(base, data=item, headers={"content-type": "application/json"}) as reply:
            await reply.read()
            return reply.status == 204

    results: dict[str, tuple[Run, float]] = {}
    try:
        await fixed_rate(sidecar_save, args.rate, 2, args.connections)  # fills every key, warms up
        for name, op in (
            ("get: redis-py direct", direct_get),
            ("get: through sidecar", sidecar_get),
            ("save: redis-py direct", direct_save),
            ("save: through sidecar", sidecar_save),
        ):
            await fixed_rate(op, args.rate, 2, args.connections)  # warm-up
            before = cpu_seconds(sidecar_pid)
            run = await fixed_rate(op, args.rate, args.seconds, args.connections)
            mcpu = (cpu_seconds(sidecar_pid) - before) / run.seconds * 1000 / (args.rate / 1000)
            results[name] = (run, mcpu)
    finally:
        await http.close()
        await direct.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sampling", default="0", help="tracing samplingRate for the sidecar")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="outrig-bench-state-"))
    redis_port, sidecar_port = free_port(), free_port()
    redis_bin = shutil.which("redis-server") or sys.exit("no redis-server: run scripts/install-redis.sh")
    resources = home / "resources"
    resources.mkdir()
    (resources / "statestore.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n"
        f"  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n"
        f"    value: 127.0.0.1:{redis_port}\n"
    )
    config = home / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: bench\nspec:\n"
        f'  tracing:\n    samplingRate: "{args.sampling}"\n'
    )
    procs = [
        subprocess.Popen(
            [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
    ]
    command = [sys.executable, "-m", "outrig.runtime", "run", "--app-id", "bench", "--log-level", "warn",
               "--dapr-http-port", str(sidecar_port), "--dapr-grpc-port", str(free_port()),
               "--resources-path", str(resources), "--config", str(config)]  # fmt: skip
    procs.append(subprocess.Popen(command, env=dict(os.environ, OUTRIG_HOME=str(home))))
    try:
        wait_healthy(sidecar_port)
        results = uvloop.run(measure(args, redis_port, sidecar_port, procs[-1].pid))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)
        shutil.rmtree(home, ignore_errors=True)

    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load generator, sidecar and Redis share it"
    )
    print(
        f"load: {args.rate} req/s for {args.seconds}s, {args.connections} connections, "
        f"{len(VALUE)} B JSON values, tracing samplingRate {args.sampling}\n"
    )
    print(f"{'':24}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'errors':>8}{'req/s':>8}{'mCPU':>7}")
    for name, (run, mcpu) in results.items():
        cpu = f"{mcpu:7.0f}" if "sidecar" in name else f"{'':7}"
        print(
            f"{name:24}{run.pct(50):9.2f}{run.pct(90):9.2f}{run.pct(99):9.2f}"
            f"{run.errors:8d}{run.qps:8.0f}{cpu}"
        )
    for op in ("get", "save"):
        direct, via = results[f"{op}: redis-py direct"][0], results[f"{op}: through sidecar"][0]
        added = [via.pct(p) - direct.pct(p) for p in (50, 90, 99)]
        print(f"{op + ' added by outrig':24}" + "".join(f"{a:9.2f}" for a in added))
    print(f"{'Dapr 1.17 get adds':24}{DAPR_117_GET['p50']:9.2f}{'':9}{DAPR_117_GET['p99']:9.2f}")
    print("(mCPU: the sidecar's CPU per 1,000 req/s)")


if __name__ == "__main__":
    main()

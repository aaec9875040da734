"""The rate limiter's cost per call, in-process: local token bucket and cluster-wide GCRA on Redis.

Each variant runs the same calls through `ErrorMapping -> [limiter] -> endpoint` inside a
recording server span (as in the sidecar), and prints CPU (and wall time) per call, next to
the same pipeline without a limiter measured in the same run. The limits are set high, so
every call is admitted and what is timed is the decision; one row times refusals (429).
Redis mode starts its own redis-server on a free port (apt-get install redis-server).

    python benchmarks/ratelimit.py
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping

import uvloop
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from outrig.middleware import (
    Call,
    ErrorMapping,
    Hop,
    Middleware,
    MiddlewareContext,
    Pipeline,
    Result,
    plugins,
)
from outrig.middleware.ratelimit import LocalLimits

CALLS = 20_000
CONCURRENCY = 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_call() -> Call:
    return Call("invoke", "invoke", "orders", "checkout", Hop.APP_API, "/v1.0/invoke/{appId}/method/{method}")


async def endpoint(call: Call) -> Result:
    return Result(200)


async def measure(middleware: list[Middleware], concurrency: int = 1) -> tuple[float, float, int]:
    """CPU and wall microseconds per call, and how many calls were refused."""
    pipeline = Pipeline([ErrorMapping(), *middleware], endpoint)
    tracer = trace.get_tracer("bench")
    refused = 0

    async def worker(count: int) -> None:
        nonlocal refused
        for _ in range(count):
            with tracer.start_as_current_span("POST /v1.0/invoke", kind=SpanKind.SERVER):
                result = await pipeline(make_call())
            refused += result.status != 200

    await asyncio.gather(*(worker(500 // concurrency) for _ in range(concurrency)))  # warm up
    refused = 0
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(CALLS // concurrency) for _ in range(concurrency)))
    n = CALLS // concurrency * concurrency
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6, refused


async def limiter(metadata: Mapping[str, object]) -> Middleware:
    built = plugins.build("middleware.outrig.ratelimit", {k: str(v) for k, v in metadata.items()})
    start: Callable[[MiddlewareContext], Awaitable[None]] = built.start  # type: ignore[attr-defined]
    await start(MiddlewareContext("bench", "bench-limit"))
    return built


def row(label: str, cost: tuple[float, float, int], base: tuple[float, float, int]) -> None:
    cpu, wall, refused = cost
    extra = cpu - base[0]
    print(f"{label:46} {cpu:7.1f} us CPU {wall:7.1f} us wall  x{cpu / base[0]:4.2f}  "
          f"(+{extra:5.1f} us){f'  {refused} refused' if refused else ''}")  # fmt: skip


def key_churn(max_keys: int = 10_000, calls: int = CALLS) -> None:
    """The local buckets at `max_keys` with a new key on every call (a caller inventing keys):
    each call forgets one key. Printed against calls on a known key, in the same run."""
    limits = LocalLimits(1e9, 1_000_000, max_keys)
    for i in range(max_keys):
        limits.take(f"warm-{i}", 0.0)
    cpu = time.process_time()
    for _ in range(calls):
        limits.take("known", 0.0)
    known = (time.process_time() - cpu) / calls * 1e6
    cpu = time.process_time()
    for i in range(calls):
        limits.take(f"new-{i}", 0.0)
    new = (time.process_time() - cpu) / calls * 1e6
    print(f"{'buckets: a known key':46} {known:7.2f} us CPU")
    print(f"{f'buckets: a new key at maxKeys={max_keys} (evicts)':46} {new:7.2f} us CPU  x{new / known:4.2f}")


async def run(redis_address: str) -> None:
    high = {"requestsPerSecond": 1e9, "burst": 1_000_000}
    base = await measure([])
    print(f"{'no limiter (baseline)':46} {base[0]:7.1f} us CPU {base[1]:7.1f} us wall")
    row("local, global key", await measure([await limiter(high)]), base)
    row("local, caller+method key", await measure([await limiter({**high, "key": "caller,method"})]), base)
    row("local, every call refused (429)", await measure([await limiter({"requestsPerSecond": 1e-6})]), base)
    cluster = {**high, "mode": "cluster", "redisHost": redis_address, "limitName": "bench"}
    shared = await limiter(cluster)
    base16 = await measure([], CONCURRENCY)
    label = f"no limiter, {CONCURRENCY} concurrent (baseline)"
    print(f"{label:46} {base16[0]:7.1f} us CPU {base16[1]:7.1f} us wall")
    row("cluster (Redis), one call at a time", await measure([shared]), base)
    row(f"cluster (Redis), {CONCURRENCY} concurrent", await measure([shared], CONCURRENCY), base16)


def main() -> None:
    trace.set_tracer_provider(TracerProvider())
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("no redis-server on PATH: apt-get install redis-server")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="outrig-ratelimit-bench-")
    redis = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        uvloop.run(run(f"127.0.0.1:{port}"))  # the sidecar's event loop
        key_churn()
    finally:
        redis.terminate()
        redis.wait()


if __name__ == "__main__":
    main()

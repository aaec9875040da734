"""Service invocation over Dapr's gRPC API: its cost against the HTTP API and against a
direct gRPC call, same run.

One gRPC app (Dapr's `AppCallback`, `OnInvoke` echoing the data; served by this script
with `--serve-app PORT`) behind sidecar B (`--app-protocol grpc`); sidecar A in front.
The same client load (`--concurrency` workers in a closed loop, each sending the next
request when its answer arrives, 1 KB bodies) goes, in turn:

- straight to the app: `AppCallback/OnInvoke` over gRPC (the direct baseline);
- through the sidecars over gRPC: `Dapr/InvokeService` to A -> B -> the app;
- through the sidecars over HTTP: `POST /v1.0/invoke/bench-b/method/echo` to A -> B -> the app.

Prints p50/p90/p99 and req/s of each, the latency each API adds over the direct call,
the gRPC path's ratios to the HTTP path and to the direct call, and each sidecar's CPU per
1,000 requests on both paths. Run it on a quiet machine (load < 1.5): the client, app and
sidecars share it.

    python benchmarks/grpc_invoke.py [--seconds 20] [--concurrency 8] [--body 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
from common import cpu_seconds, free_port, wait_healthy
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2_grpc, dapr_pb2_grpc
from dapr.proto.runtime.v1.invoke_pb2 import InvokeServiceRequest
from google.protobuf import any_pb2

HERE = Path(__file__).parent


class EchoCallback(appcallback_pb2_grpc.AppCallbackServicer):
    async def OnInvoke(self, request: common_pb2.InvokeRequest, context: object) -> common_pb2.InvokeResponse:  # noqa: N802
        return common_pb2.InvokeResponse(data=request.data, content_type=request.content_type)


async def serve_app(port: int) -> None:
    server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(EchoCallback(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


@dataclass
class Run:
    latencies_ms: list[float]
    errors: int
    seconds: float

    def pct(self, p: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100)[p - 1]

    @property
    def qps(self) -> float:
        return len(self.latencies_ms) / self.seconds


async def closed_loop(send: Callable[[], Awaitable[bool]], concurrency: int, seconds: float) -> Run:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.monotonic() < stop:
            start = time.perf_counter()
            ok = await send()
            latencies.append((time.perf_counter() - start) * 1000)
            errors += not ok

    began = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(latencies, errors, time.monotonic() - began)


async def measure(
    args: argparse.Namespace, app_port: int, a_http: int, a_grpc: int, sidecars: list[int]
) -> tuple[dict[str, Run], dict[str, list[float]]]:
    """Each path's run, and each sidecar's CPU milliseconds per 1,000 requests on it."""
    body = b"x" * args.body
    data = any_pb2.Any(value=body)
    direct_channel = grpc.aio.insecure_channel(f"127.0.0.1:{app_port}")
    sidecar_channel = grpc.aio.insecure_channel(f"127.0.0.1:{a_grpc}")
    app = appcallback_pb2_grpc.AppCallbackStub(direct_channel)
    dapr = dapr_pb2_grpc.DaprStub(sidecar_channel)
    request = common_pb2.InvokeRequest(method="echo", data=data, content_type="application/octet-stream")
    url = f"http://127.0.0.1:{a_http}/v1.0/invoke/bench-b/method/echo"
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def direct() -> bool:
            reply = await app.OnInvoke(request)
            return reply.data.value == body

        async def via_grpc() -> bool:
            reply = await dapr.InvokeService(InvokeServiceRequest(id="bench-b", message=request))
            return reply.data.value == body

        async def via_http() -> bool:
            async with session.post(
                url, data=body, headers={"content-type": "application/octet-stream"}
            ) as r:
                return r.status == 200 and await r.read() == body

        runs: dict[str, Run] = {}
        cpu: dict[str, list[float]] = {}
        for name, send in (("direct", direct), ("grpc", via_grpc), ("http", via_http)):
            await closed_loop(send, args.concurrency, 2)  # warm-up
            before = [cpu_seconds(pid) for pid in sidecars]
            runs[name] = run = await closed_loop(send, args.concurrency, args.seconds)
            used = [cpu_seconds(pid) - b for pid, b in zip(sidecars, before, strict=True)]
            cpu[name] = [u * 1000 / len(run.latencies_ms) * 1000 for u in used]
    await direct_channel.close()
    await sidecar_channel.close()
    return runs, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--body", type=int, default=1024)
    parser.add_argument("--sampling", default="1", help="tracing samplingRate for the sidecars")
    parser.add_argument("--serve-app", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_app:
        asyncio.run(serve_app(args.serve_app))
        return

    home = Path(tempfile.mkdtemp(prefix="outrig-bench-"))
    env = dict(os.environ, OUTRIG_HOME=str(home))
    config = home / "config.yaml"
    config.write_text("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: bench\n"
                      f'spec:\n  tracing:\n    samplingRate: "{args.sampling}"\n')  # fmt: skip
    app_port, a_http, a_grpc, b_http = free_port(), free_port(), free_port(), free_port()
    procs = [subprocess.Popen([sys.executable, __file__, "--serve-app", str(app_port)], env=env)]
    try:
        for app_id, http, extra in (
            ("bench-b", b_http, ["--app-port", str(app_port), "--app-protocol", "grpc"]),
            ("bench-a", a_http, []),
        ):
            grpc_port = a_grpc if app_id == "bench-a" else free_port()
            command = [sys.executable, "-m", "outrig.runtime", "run", "--app-id", app_id,
                       "--dapr-http-port", str(http), "--dapr-grpc-port", str(grpc_port),
                       "--metrics-port", str(free_port()), "--config", str(config), "--log-level", "warn",
                       *extra]  # fmt: skip
            procs.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL))
        for port in (b_http, a_http):
            wait_healthy(port)
        runs, cpu = asyncio.run(measure(args, app_port, a_http, a_grpc, [p.pid for p in procs[1:]]))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)
    report(args, runs, cpu)


def report(args: argparse.Namespace, runs: dict[str, Run], cpu: dict[str, list[float]]) -> None:
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; client, app and both sidecars share it"
    )
    print(f"load: closed loop, {args.concurrency} workers, {args.seconds:.0f}s per path, "
          f"{args.body} B bodies, tracing samplingRate {args.sampling}\n")  # fmt: skip
    print(f"{'':30}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'errors':>8}{'req/s':>8}")
    names = {
        "direct": "direct gRPC to the app",
        "grpc": "gRPC API, 2 sidecars",
        "http": "HTTP API, 2 sidecars",
    }
    for key, label in names.items():
        run = runs[key]
        print(
            f"{label:30}{run.pct(50):9.2f}{run.pct(90):9.2f}{run.pct(99):9.2f}{run.errors:8d}{run.qps:8.0f}"
        )
    direct, via_grpc, via_http = runs["direct"], runs["grpc"], runs["http"]
    for key in ("grpc", "http"):
        label = f"added by outrig ({key})"
        print(f"{label:30}" + "".join(f"{runs[key].pct(q) - direct.pct(q):9.2f}" for q in (50, 90, 99)))
    print(
        f"{'ratio gRPC path / direct':30}"
        + "".join(f"{via_grpc.pct(q) / direct.pct(q):9.2f}" for q in (50, 90, 99))
    )
    print(
        f"{'ratio gRPC path / HTTP path':30}"
        + "".join(f"{via_grpc.pct(q) / via_http.pct(q):9.2f}" for q in (50, 90, 99))
    )
    print(f"{'throughput gRPC / HTTP':30}{via_grpc.qps / via_http.qps:9.2f}")
    for key in ("grpc", "http"):
        a, b = cpu[key][1], cpu[key][0]
        print(f"sidecar CPU per 1,000 requests over {key}: A {a:.0f} ms, B {b:.0f} ms")
    print(
        f"CPU ratio gRPC / HTTP: A {cpu['grpc'][1] / cpu['http'][1]:.2f}, "
        f"B {cpu['grpc'][0] / cpu['http'][0]:.2f}"
    )


if __name__ == "__main__":
    main()

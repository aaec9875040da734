"""Service invocation overhead: app B directly vs through two outrig sidecars, same run.

The load is Fortio's (the Go load generator Dapr's own performance tests use, built by
scripts/install-fortio.sh): fixed rate, default 1 KB POST bodies, 16 connections,
1,000 req/s, evenly spaced (`-uniform`), 0.1 ms histogram resolution. It is sent first
straight to app B, then through sidecar A -> sidecar B -> app B, in the same run. Prints
p50/p90/p99 for each, the latency the sidecars add, each sidecar's CPU per 1,000 req/s and
its peak RSS, next to Dapr 1.17's published figures (measured with Fortio the same way).

With `--mtls`, a second pair of sidecars with `spec.mtls.enabled` (their own CA in the
run's outrig home) is measured in the same run, and the cost of mTLS printed against the
plain pair (the connections between sidecars are pooled: handshakes are rare, so this is
mostly the cost of encrypting each request and response).

    python benchmarks/invoke.py [--rate 1000] [--seconds 30] [--connections 16] [--sampling 1] [--mtls]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import children, cpu_seconds, free_port, peak_rss_mb, wait_healthy

HERE = Path(__file__).parent
DAPR_117 = {"p50": 1.06, "p90": 1.48, "p99": 2.90, "mcpu": 202, "rss_mb": 51}


@dataclass
class Run:
    percentiles_ms: dict[int, float]
    errors: int
    seconds: float
    qps: float

    def pct(self, p: int) -> float:
        return self.percentiles_ms[p]


def tool(script: str) -> str:
    """The path of a tool built (once, then cached) by one of scripts/install-*.sh."""
    out = subprocess.run([str(HERE.parent / "scripts" / script)], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def load(binary: str, url: str, rate: int, seconds: float, connections: int, body: int) -> Run:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                binary,
                "load",
                "-qps",
                str(rate),
                "-c",
                str(connections),
                "-t",
                f"{seconds}s",
                "-payload-size",
                str(body),
                "-uniform",
                "-r",
                "0.0001",
                "-allow-initial-errors",
                "-log-errors=false",
                "-loglevel",
                "Error",
                "-json",
                out.name,
                url,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        result = json.loads(Path(out.name).read_text())
    percentiles = {
        int(p["Percentile"]): p["Value"] * 1000
        for p in result["DurationHistogram"]["Percentiles"]
        if p["Percentile"] in (50, 90, 99)
    }
    codes = result["RetCodes"]
    errors = sum(codes.values()) - codes.get("200", 0)
    return Run(percentiles, errors, result["ActualDuration"] / 1e9, result["ActualQPS"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--body", type=int, default=1024)
    parser.add_argument("--sampling", default="1", help="tracing samplingRate for the sidecars")
    parser.add_argument("--no-metrics", action="store_true", help="spec.metric.enabled: false")
    parser.add_argument("--mtls", action="store_true", help="also through two sidecars with mTLS on")
    parser.add_argument(
        "--floor", action="store_true", help="bare uvicorn+aiohttp forwarders instead of sidecars"
    )
    parser.add_argument(
        "--otlp",
        choices=["grpc", "http"],
        help="export spans to a real Jaeger over OTLP (default: local store)",
    )
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="outrig-bench-"))
    env = dict(os.environ, OUTRIG_HOME=str(home))
    app_port, a_port, b_port = free_port(), free_port(), free_port()
    procs = [subprocess.Popen([sys.executable, str(HERE / "echo_app.py"), str(app_port)], env=env)]
    tracing = f'  tracing:\n    samplingRate: "{args.sampling}"\n'
    if args.no_metrics:
        tracing = "  metric:\n    enabled: false\n" + tracing
    if args.otlp:
        grpc_port, http_port = free_port(), free_port()
        jaeger_env = dict(
            env,
            JAEGER_OTLP_GRPC_PORT=str(grpc_port),
            JAEGER_OTLP_HTTP_PORT=str(http_port),
            JAEGER_QUERY_PORT=str(free_port()),
        )
        jaeger = tool("install-jaeger.sh")
        config_file = HERE.parent / "scripts" / "jaeger-config.yaml"
        procs.append(subprocess.Popen([jaeger, "--config", f"file:{config_file}"], env=jaeger_env))
        port = grpc_port if args.otlp == "grpc" else http_port
        tracing += f"    otel:\n      endpointAddress: 127.0.0.1:{port}\n      protocol: {args.otlp}\n"
    config = home / "config.yaml"
    config.write_text(
        f"apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: bench\nspec:\n{tracing}"
    )
    mtls_config = home / "config-mtls.yaml"
    mtls_config.write_text(config.read_text() + "  mtls:\n    enabled: true\n")
    mtls_ports = (free_port(), free_port())
    try:
        if args.floor:
            # Two bare uvicorn+aiohttp forwarders, no outrig code: the stack's floor.
            for port, target in ((b_port, app_port), (a_port, b_port)):
                procs.append(
                    subprocess.Popen([sys.executable, str(HERE / "floor_proxy.py"), str(port), str(target)])
                )
        else:
            pairs = [("bench-b", b_port, "bench-a", a_port, config)]
            if args.mtls:
                pairs.append(("bench-b-mtls", mtls_ports[0], "bench-a-mtls", mtls_ports[1], mtls_config))
            for b_id, b, a_id, a, pair_config in pairs:
                for app_id, port, extra in ((b_id, b, ["--app-port", str(app_port)]), (a_id, a, [])):
                    command = [sys.executable, "-m", "outrig.runtime", "run", "--app-id", app_id,
                               "--dapr-http-port", str(port), "--dapr-grpc-port", str(free_port()),
                               "--config", str(pair_config), "--log-level", "warn", *extra]  # fmt: skip
                    procs.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL))
        for port in (b_port, a_port, *(mtls_ports if args.mtls and not args.floor else ())):
            wait_healthy(port, "/v1.0/healthz" if not args.floor else "/ready")
        plain = procs[1:3] if not args.otlp else procs[2:4]
        sidecars = plain
        binary = tool("install-fortio.sh")
        direct_url = f"http://127.0.0.1:{app_port}/echo"
        via_url = f"http://127.0.0.1:{a_port}/v1.0/invoke/bench-b/method/echo"
        if args.floor:
            via_url = f"http://127.0.0.1:{a_port}/echo"

        def measure(
            url: str, with_cpu: bool, sidecars: list[subprocess.Popen[bytes]] = plain
        ) -> tuple[Run, list[float]]:
            load(binary, url, args.rate, 2, args.connections, args.body)  # warm-up
            before = [cpu_seconds(p.pid) for p in sidecars]
            run = load(binary, url, args.rate, args.seconds, args.connections, args.body)
            after = [cpu_seconds(p.pid) for p in sidecars]
            used = [a - b for a, b in zip(after, before, strict=True)]
            mcpu = [u / run.seconds * 1000 / (args.rate / 1000) for u in used]
            return run, mcpu if with_cpu else []

        direct, _ = measure(direct_url, False)
        via, mcpu = measure(via_url, True)
        mtls: tuple[Run, list[float]] | None = None
        if args.mtls and not args.floor:
            mtls_url = f"http://127.0.0.1:{mtls_ports[1]}/v1.0/invoke/bench-b-mtls/method/echo"
            mtls = measure(mtls_url, True, procs[-2:])
        rss = [peak_rss_mb(p.pid) for p in sidecars]
        agent_rss = [sum(peak_rss_mb(c) for c in children(p.pid)) for p in sidecars]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)

    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; Fortio, app, sidecars (and Jaeger) share it"
    )
    sink = f"OTLP/{args.otlp} to a real Jaeger" if args.otlp else "the local trace store"
    print(
        f"load: {args.rate} req/s for {args.seconds:.0f}s, {args.connections} connections, "
        f"{args.body} B bodies, tracing samplingRate {args.sampling} to {sink}\n"
    )
    print(f"{'':22}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'errors':>8}{'req/s':>8}")
    for name, run in (
        ("direct to app B", direct),
        ("through 2 forwarders" if args.floor else "through 2 sidecars", via),
    ):
        print(f"{name:22}{run.pct(50):9.2f}{run.pct(90):9.2f}{run.pct(99):9.2f}{run.errors:8d}{run.qps:8.0f}")
    added = {p: via.pct(q) - direct.pct(q) for p, q in (("p50", 50), ("p90", 90), ("p99", 99))}
    label = "added by forwarders" if args.floor else "added by outrig"
    print(f"{label:22}{added['p50']:9.2f}{added['p90']:9.2f}{added['p99']:9.2f}")
    if mtls is not None:
        run = mtls[0]
        print(f"{'2 sidecars, mTLS on':22}{run.pct(50):9.2f}{run.pct(90):9.2f}{run.pct(99):9.2f}"
              f"{run.errors:8d}{run.qps:8.0f}")  # fmt: skip
        print(f"{'added by mTLS':22}" + "".join(f"{run.pct(q) - via.pct(q):9.2f}" for q in (50, 90, 99)))
        print(f"{'ratio mTLS on/off':22}" + "".join(f"{run.pct(q) / via.pct(q):9.2f}" for q in (50, 90, 99)))
    print(f"{'Dapr 1.17 adds':22}{DAPR_117['p50']:9.2f}{DAPR_117['p90']:9.2f}{DAPR_117['p99']:9.2f}")
    print(
        f"{'ratio outrig/Dapr':22}" + "".join(f"{added[p] / DAPR_117[p]:9.2f}" for p in ("p50", "p90", "p99"))
    )
    print(
        f"\nsidecar CPU per 1,000 req/s, with its telemetry agent: B {mcpu[0]:.0f} mCPU, "
        f"A {mcpu[1]:.0f} mCPU (Dapr 1.17: {DAPR_117['mcpu']} mCPU)"
    )
    if mtls is not None:
        m = mtls[1]
        print(
            f"with mTLS on: B {m[0]:.0f} mCPU, A {m[1]:.0f} mCPU "
            f"(ratio to mTLS off: B {m[0] / mcpu[0]:.2f}, A {m[1] / mcpu[1]:.2f})"
        )
    print(
        f"peak RSS: sidecar B {rss[0]:.1f} MB + agent {agent_rss[0]:.1f} MB, sidecar A {rss[1]:.1f} MB"
        f" + agent {agent_rss[1]:.1f} MB (Dapr 1.17: {DAPR_117['rss_mb']} MB)"
    )


if __name__ == "__main__":
    main()

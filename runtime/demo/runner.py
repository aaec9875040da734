"""`outrig demo`: three services with their sidecars, a few checkouts, and the trace."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from outrig.telemetry import TraceStore, render_trace, trace_store_path

from ..options import outrig_home

SERVICES = ("inventory", "orders", "frontend")
ORDERS = (
    {"item": "espresso", "quantity": 2},
    {"item": "croissant", "quantity": 1},
    {"item": "bagel", "quantity": 1},
)
EXPECTED_SPANS = 16
"""Per placed order: 2 spans for the call into frontend through its own sidecar (API server,
app client), then 4 for each of frontend -> orders and orders -> inventory (API server,
peer client, peer server, app client), 2 for the save (API server, `SET statestore`
client), 2 for the publish (API server, `send orders` producer) and 2 for the delivery to
inventory (`process orders` consumer, `POST /orders-placed` app client)."""
PLACED_HEADING = (
    "The last placed order's trace (invoke, state, publish, delivery), from the local trace store:"
)
REFUSED_SPANS = 10
"""A checkout refused for lack of stock stops after the stock query."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"a demo sidecar exited early with code {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1.0/healthz", timeout=1).status_code == 204:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"a demo sidecar on port {port} did not become healthy in time")


def run_demo(requests: int) -> int:
    home = outrig_home()
    env = dict(os.environ, OTEL_BSP_SCHEDULE_DELAY="200")
    procs: list[subprocess.Popen[bytes]] = []
    ports: dict[str, int] = {}
    try:
        for app_id in SERVICES:
            ports[app_id] = free_port()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "outrig.runtime",
                        "run",
                        "--app-id",
                        app_id,
                        "--app-port",
                        str(free_port()),
                        "--dapr-http-port",
                        str(ports[app_id]),
                        "--dapr-grpc-port",
                        str(free_port()),
                        "--metrics-port",
                        str(free_port()),
                        "--log-level",
                        "warn",
                        "--",
                        sys.executable,
                        "-m",
                        "outrig.runtime.demo.service",
                    ],
                    env=env,
                )
            )
        deadline = time.monotonic() + 30
        for app_id, proc in zip(SERVICES, procs, strict=True):
            _wait_healthy(ports[app_id], proc, deadline)
        print("\nThree services are up: frontend -> orders -> inventory, each with its sidecar.\n")
        placed: str | None = None  # the trace to show: the last placed order's, else the last
        last = ""
        for i in range(requests):
            order = ORDERS[i % len(ORDERS)]
            trace_id = secrets.token_hex(16)
            reply = httpx.post(
                f"http://127.0.0.1:{ports['frontend']}/v1.0/invoke/frontend/method/checkout",
                json=order,
                headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
                timeout=10,
            )
            print(f"checkout {order} -> {reply.status_code} {reply.text}")
            last = trace_id
            if reply.status_code == 201:
                placed = trace_id
        print()
        if placed:
            print(f"{PLACED_HEADING}\n")
            _show_trace(trace_store_path(home), placed, EXPECTED_SPANS)
        elif last:
            print("No order was placed; the last checkout's trace, from the local trace store:\n")
            _show_trace(trace_store_path(home), last, REFUSED_SPANS)
        print(f"\nSpans are kept in {trace_store_path(home)}; `outrig traces` shows the latest.")
        return 0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _show_trace(path: Path, trace_id: str, expected: int) -> None:
    """The trace once all its spans are stored: the delivery to inventory ends after the
    checkout has answered, and spans reach the store in batches."""
    deadline = time.monotonic() + 10
    store = TraceStore(path)
    try:
        spans = store.spans(trace_id)
        while len(spans) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
            spans = store.spans(trace_id)
        print(render_trace(spans))
    finally:
        store.close()

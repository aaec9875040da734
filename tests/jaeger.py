"""A real Jaeger v2 (all-in-one, in-memory) on free loopback ports, for telemetry tests.

The binary is built by scripts/install-jaeger.sh (scripts/test does it and exports
OUTRIG_JAEGER_BIN). A missing binary fails the test with that hint: it is never skipped.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port, wait_for_port

ROOT = Path(__file__).parent.parent
DEFAULT_BIN = Path.home() / ".cache" / "outrig" / "tools" / "jaeger-v1.76.0"


@dataclass
class Jaeger:
    grpc_port: int
    http_port: int
    query_port: int

    def trace(self, trace_id: str, expected_spans: int, timeout: float = 20) -> dict[str, Any]:
        """The trace as Jaeger's query API returns it, once it has `expected_spans` spans."""
        deadline = time.monotonic() + timeout
        found: dict[str, Any] = {}
        while time.monotonic() < deadline:
            reply = httpx.get(f"http://127.0.0.1:{self.query_port}/api/traces/{trace_id}", timeout=5)
            if reply.status_code == 200 and reply.json().get("data"):
                found = reply.json()["data"][0]
                if len(found["spans"]) >= expected_spans:
                    return found
            time.sleep(0.2)
        raise AssertionError(
            f"Jaeger has {len(found.get('spans', []))} spans of {trace_id}, expected {expected_spans}"
        )


def run_jaeger(workdir: Path) -> Iterator[Jaeger]:
    binary = Path(os.environ.get("OUTRIG_JAEGER_BIN") or DEFAULT_BIN)
    if not binary.exists():
        raise AssertionError(
            f"no Jaeger binary at {binary}: run scripts/install-jaeger.sh "
            "(scripts/test does) or set OUTRIG_JAEGER_BIN"
        )
    jaeger = Jaeger(free_port(), free_port(), free_port())
    env = dict(
        os.environ,
        JAEGER_OTLP_GRPC_PORT=str(jaeger.grpc_port),
        JAEGER_OTLP_HTTP_PORT=str(jaeger.http_port),
        JAEGER_QUERY_PORT=str(jaeger.query_port),
    )
    with (workdir / "jaeger.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(binary), "--config", f"file:{ROOT / 'scripts' / 'jaeger-config.yaml'}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        for port in (jaeger.grpc_port, jaeger.http_port, jaeger.query_port):
            wait_for_port(port, proc)
        yield jaeger
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

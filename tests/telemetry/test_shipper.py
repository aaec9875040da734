"""The span shipper with a real agent process: never blocks, never loses count."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from outrig.telemetry.shipper import MAX_PENDING_BYTES, SpanShipper


def test_a_stalled_agent_costs_dropped_spans_not_blocked_callers(tmp_path: Path) -> None:
    store = tmp_path / "traces.db"
    shipper = SpanShipper({"service": "svc", "store": str(store), "otlp": None})
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(shipper)
    tracer = provider.get_tracer("test")
    agent = shipper._agent.pid
    os.kill(agent, signal.SIGSTOP)  # the agent reads nothing: the pipe and then the buffer fill
    total = 2000
    try:
        for i in range(total):
            padding = os.urandom(5_000).hex()  # distinct: marshal would share one repeated object
            tracer.start_span(f"span-{i}", attributes={"pad": padding}).end()
        assert len(shipper._pending) <= MAX_PENDING_BYTES + 64 * 11_000
        assert shipper.dropped > 0, "past the cap, spans are dropped (and counted), callers go on"
    finally:
        os.kill(agent, signal.SIGCONT)
    provider.shutdown()
    stored = sqlite3.connect(store).execute("SELECT COUNT(*) FROM spans").fetchone()[0]
    assert stored > 0
    assert stored + shipper.dropped == total, "every span is either stored or counted as dropped"


def test_spans_reach_the_store_through_the_agent(tmp_path: Path) -> None:
    store = tmp_path / "traces.db"
    shipper = SpanShipper({"service": "svc", "store": str(store), "otlp": None})
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(shipper)
    with provider.get_tracer("test").start_as_current_span("outer"):
        pass
    provider.shutdown()
    rows = sqlite3.connect(store).execute("SELECT service, name FROM spans").fetchall()
    assert rows == [("svc", "outer")]
    assert shipper._agent.returncode == 0


def test_the_agent_outlives_signals_and_stops_when_the_pipe_closes(tmp_path: Path) -> None:
    store = tmp_path / "traces.db"
    shipper = SpanShipper({"service": "svc", "store": str(store), "otlp": None})
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(shipper)
    agent = shipper._agent

    time.sleep(1)  # let the agent install its handlers
    for sig in (signal.SIGINT, signal.SIGTERM):
        os.kill(agent.pid, sig)
    with provider.get_tracer("test").start_as_current_span("after the signals"):
        pass
    time.sleep(0.2)
    assert agent.poll() is None, "the agent is still running"
    provider.shutdown()
    assert agent.returncode == 0
    assert sqlite3.connect(store).execute("SELECT name FROM spans").fetchall() == [("after the signals",)]

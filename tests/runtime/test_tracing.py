"""Traces across real sidecars, read back from the local trace store."""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

import httpx

from outrig.telemetry import StoredSpan, TraceStore, trace_store_path
from tests.support import Processes, free_port


def wait_for_spans(home: Path, trace_id: str, count: int, timeout: float = 15) -> list[StoredSpan]:
    deadline = time.monotonic() + timeout
    spans: list[StoredSpan] = []
    while time.monotonic() < deadline:
        if trace_store_path(home).exists():
            store = TraceStore(trace_store_path(home))
            try:
                spans = store.spans(trace_id)
            finally:
                store.close()
            if len(spans) >= count:
                return spans
        time.sleep(0.1)
    raise AssertionError(f"expected {count} spans of trace {trace_id}, found {len(spans)}: {spans}")


def test_one_trace_across_all_hops_with_parents_kinds_names_and_attributes(procs: Processes) -> None:
    a = procs.sidecar_with_echo("front")
    b = procs.sidecar_with_echo("back")
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    reply = httpx.post(
        a.invoke_url("back", "items/7") + "?q=1",
        content=b"{}",
        headers={
            "traceparent": f"00-{trace_id}-{caller_span}-01",
            "tracestate": "vendor=abc",
            "baggage": "tenant=acme",
        },
    )
    assert reply.status_code == 200
    seen_by_app_b = reply.json()["headers"]

    spans = wait_for_spans(procs.home, trace_id, 4)
    assert len(spans) == 4
    by_role = {(s.service, s.kind): s for s in spans}
    a_server, a_client = by_role[("front", "SERVER")], by_role[("front", "CLIENT")]
    b_server, b_client = by_role[("back", "SERVER")], by_role[("back", "CLIENT")]

    assert {s.trace_id for s in spans} == {trace_id}
    assert a_server.parent_id == caller_span
    assert a_client.parent_id == a_server.span_id
    assert b_server.parent_id == a_client.span_id
    assert b_client.parent_id == b_server.span_id

    # App B continues the trace from sidecar B's client span; state and baggage travel too.
    _version, tid, parent, flags = seen_by_app_b["traceparent"].split("-")
    assert (tid, parent) == (trace_id, b_client.span_id)
    assert int(flags, 16) & 1 == 1
    assert seen_by_app_b["tracestate"] == "vendor=abc"
    assert seen_by_app_b["baggage"] == "tenant=acme"

    route = "/v1.0/invoke/{appId}/method/{method}"
    assert a_server.name == b_server.name == f"POST {route}"
    assert a_client.name == f"POST {route}"
    assert b_client.name == "POST"
    for server in (a_server, b_server):
        attrs = server.attributes
        assert attrs["http.request.method"] == "POST"
        assert attrs["http.route"] == route
        assert attrs["url.path"] == "/v1.0/invoke/back/method/items/7"
        assert attrs["url.query"] == "q=1"
        assert attrs["http.response.status_code"] == 200
        assert attrs["server.address"] == "127.0.0.1"
        assert attrs["outrig.dapr.span_name"] == "CallLocal/back/items/7"
    assert a_server.attributes["server.port"] == a.http_port
    assert a_server.attributes["outrig.hop"] == "app-api"
    assert b_server.attributes["outrig.hop"] == "peer"
    assert a_client.attributes["url.template"] == route
    assert a_client.attributes["url.full"].endswith("/v1.0/invoke/back/method/items/7")
    assert b_client.attributes["url.full"] == f"http://127.0.0.1:{b.app_port}/items/7"
    assert b_client.attributes["server.port"] == b.app_port
    assert b_client.attributes["outrig.hop"] == "app-channel"
    for span in spans:
        assert span.status == "UNSET"
        assert span.attributes["http.response.status_code"] == 200
    # Each span lies within its parent's time.
    for child, parent_span in ((a_client, a_server), (b_server, a_client), (b_client, b_server)):
        assert parent_span.start_ns <= child.start_ns and child.end_ns <= parent_span.end_ns


def test_a_call_without_trace_context_starts_a_trace_and_errors_are_marked(procs: Processes) -> None:
    a = procs.sidecar_with_echo("front")
    procs.sidecar_with_echo("back")
    reply = httpx.get(a.invoke_url("back", "status/503"))
    assert reply.status_code == 503
    spans_seen = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(spans_seen) < 4:
        store = TraceStore(trace_store_path(procs.home))
        ids = store.recent_trace_ids(5)
        spans_seen = store.spans(ids[0]) if ids else []
        store.close()
        time.sleep(0.1)
    assert len(spans_seen) == 4
    root = next(s for s in spans_seen if s.parent_id is None)
    assert root.service == "front" and root.kind == "SERVER"
    assert all(s.status == "ERROR" for s in spans_seen)
    assert all(s.attributes["error.type"] == "503" for s in spans_seen)


def test_sampling_rate_zero_records_nothing_but_still_propagates(procs: Processes, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: quiet\n"
        'spec:\n  tracing:\n    samplingRate: "0"\n'
    )
    a = procs.sidecar_with_echo("front", extra_args=["--config", str(config)])
    procs.sidecar_with_echo("back", extra_args=["--config", str(config)])
    seen = httpx.get(a.invoke_url("back", "x")).json()["headers"]
    flags = int(seen["traceparent"].rsplit("-", 1)[1], 16)
    assert flags & 1 == 0, "the sampled flag must be off downstream"
    time.sleep(1)  # several export intervals (100 ms in tests) for anything that would appear
    path = trace_store_path(procs.home)
    if path.exists():
        store = TraceStore(path)
        assert store.recent_trace_ids(10) == []
        store.close()


def test_unreachable_collector_never_fails_requests_or_blocks_exit(procs: Processes, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: otel\n"
        'spec:\n  tracing:\n    samplingRate: "1"\n    otel:\n'
        f"      endpointAddress: 127.0.0.1:{free_port()}\n"
        "      isSecure: false\n      protocol: grpc\n"
    )
    a = procs.sidecar_with_echo("front", extra_args=["--config", str(config)])
    b = procs.sidecar_with_echo("back", extra_args=["--config", str(config)])
    with httpx.Client() as client:
        for _ in range(50):
            assert client.get(a.invoke_url("back", "x")).status_code == 200
    for sidecar in (a, b):
        started = time.monotonic()
        sidecar.proc.terminate()
        assert sidecar.proc.wait(10) == 0
        # The agent gets at most 3 s to export; the rest is process teardown.
        assert time.monotonic() - started < 6, "a dead collector held up the sidecar's exit"


def test_the_sidecar_keeps_serving_when_its_telemetry_agent_dies(procs: Processes) -> None:
    a = procs.sidecar_with_echo("front")
    procs.sidecar_with_echo("back")
    children = Path(f"/proc/{a.proc.pid}/task/{a.proc.pid}/children").read_text().split()
    agent = next(
        pid
        for pid in map(int, children)
        if b"outrig.telemetry.agent" in Path(f"/proc/{pid}/cmdline").read_bytes()
    )
    os.kill(agent, signal.SIGKILL)
    with httpx.Client() as client:
        for _ in range(200):
            assert client.get(a.invoke_url("back", "x")).status_code == 200
    time.sleep(0.3)
    assert "telemetry agent is gone" in a.output()
    a.proc.terminate()
    assert a.proc.wait(10) == 0


def test_ctrl_c_to_the_whole_process_group_keeps_the_last_spans(procs: Processes) -> None:
    a = procs.sidecar_with_echo("front", new_session=True)
    procs.sidecar_with_echo("back")
    with httpx.Client() as client:
        for _ in range(40):
            assert client.get(a.invoke_url("back", "x")).status_code == 200
    os.killpg(a.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does to its foreground group
    assert a.proc.wait(10) == 0
    deadline = time.monotonic() + 10
    count = 0
    while time.monotonic() < deadline:
        store = TraceStore(trace_store_path(procs.home))
        count = store._conn.execute("SELECT COUNT(*) FROM spans WHERE service = 'front'").fetchone()[0]
        store.close()
        if count >= 80:
            break
        time.sleep(0.1)
    assert count == 80, "every span of sidecar A (2 per call) reached the store"

"""The local trace store and its tree rendering, with spans from a real SDK provider."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from outrig.telemetry import TraceStore, TraceStoreExporter, render_trace


def record_trace(path: Path, max_spans: int = 1000) -> str:
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(TraceStoreExporter(path, max_spans=max_spans)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "GET /outer",
        kind=SpanKind.SERVER,
        attributes={"url.path": "/outer", "http.response.status_code": 200},
    ) as outer:
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT):
            pass
        with tracer.start_as_current_span("second", kind=SpanKind.INTERNAL):
            pass
    provider.shutdown()
    return f"{outer.get_span_context().trace_id:032x}"


def test_spans_are_stored_and_read_back_by_trace(tmp_path: Path) -> None:
    trace_id = record_trace(tmp_path / "t.db")
    store = TraceStore(tmp_path / "t.db")
    spans = store.spans(trace_id)
    assert [s.name for s in spans] == ["GET /outer", "GET", "second"]
    assert spans[0].parent_id is None and spans[1].parent_id == spans[0].span_id
    assert spans[0].attributes["url.path"] == "/outer"
    assert store.matching_trace_ids(trace_id[:8].upper()) == [trace_id]
    assert store.recent_trace_ids(5) == [trace_id]
    assert store.recent_trace_ids(5, service="other") == []
    store.close()


def test_render_shows_a_tree_with_durations(tmp_path: Path) -> None:
    trace_id = record_trace(tmp_path / "t.db")
    store = TraceStore(tmp_path / "t.db")
    text = render_trace(store.spans(trace_id))
    store.close()
    lines = text.splitlines()
    assert lines[0].startswith(f"trace {trace_id}") and "3 spans" in lines[0]
    assert lines[1].startswith("└─ [svc]  server  GET /outer  -> 200")
    assert lines[2].startswith("   ├─ [svc]  client  GET")
    assert lines[3].startswith("   └─ [svc]  internal  second")
    assert all(" ms" in line for line in lines[1:])


def test_old_spans_are_pruned(tmp_path: Path) -> None:
    for _ in range(60):
        record_trace(tmp_path / "t.db", max_spans=30)
    store = TraceStore(tmp_path / "t.db")
    count = store._conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
    store.close()
    assert 30 <= count <= 30 + 3

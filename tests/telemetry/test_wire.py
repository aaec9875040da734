"""Spans survive the trip sidecar -> pipe -> agent unchanged."""

from __future__ import annotations

import json

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from outrig.telemetry.tracestore import store_row
from outrig.telemetry.wire import frame, row_to_span, span_to_row, unframe


def make_span() -> object:
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    tracer = provider.get_tracer("outrig")
    with tracer.start_as_current_span("parent") as parent:
        span = tracer.start_span(
            "child",
            kind=SpanKind.CLIENT,
            attributes={"http.response.status_code": 503, "tags": ("a", "b")},
            links=[Link(parent.get_span_context(), {"why": "batch"})],
        )
        span.add_event("retry", {"attempt": 2})
        span.set_status(Status(StatusCode.ERROR, "upstream 503"))
        span.end()
    return span


def test_a_span_round_trips_through_frames() -> None:
    span = make_span()
    payload = frame([span_to_row(span)])  # type: ignore[arg-type]
    assert int.from_bytes(payload[:4], "big") == len(payload) - 4
    (row,) = unframe(payload[4:])
    back = row_to_span(row, Resource.create({"service.name": "svc"}))
    for attr in ("name", "kind", "start_time", "end_time", "attributes"):
        assert getattr(back, attr) == getattr(span, attr), attr
    assert back.context.trace_id == span.context.trace_id  # type: ignore[attr-defined]
    assert back.context.span_id == span.context.span_id  # type: ignore[attr-defined]
    assert back.parent.span_id == span.parent.span_id  # type: ignore[attr-defined]
    assert (back.status.status_code, back.status.description) == (StatusCode.ERROR, "upstream 503")
    assert [(e.name, dict(e.attributes)) for e in back.events] == [("retry", {"attempt": 2})]
    assert back.links[0].context.span_id == span.links[0].context.span_id  # type: ignore[attr-defined]


def test_store_rows_from_the_wire_carry_ids_names_and_attributes() -> None:
    span = make_span()
    row = store_row(span_to_row(span), "svc")  # type: ignore[arg-type]
    ctx, parent = span.context, span.parent  # type: ignore[attr-defined]
    assert row[:9] == (
        f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", f"{parent.span_id:016x}", "svc", "child", "CLIENT",
        span.start_time, span.end_time, "ERROR",  # type: ignore[attr-defined]
    )  # fmt: skip
    assert json.loads(row[9]) == {"http.response.status_code": 503, "tags": ["a", "b"]}
    assert json.loads(row[10])[0]["name"] == "retry"
    assert json.loads(row[11]) == [{"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{parent.span_id:016x}"}]

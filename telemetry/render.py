"""Rendering a trace as an indented tree with durations, for `outrig traces`."""

from __future__ import annotations

import datetime
from collections import defaultdict

from .tracestore import StoredSpan

# Attributes worth a glance in the tree; the first one present is shown after the name.
_DETAIL_KEYS = ("url.path", "url.full", "outrig.dapr.span_name")


def render_trace(spans: list[StoredSpan]) -> str:
    """One trace as text: a header line, then each span under its parent.

    Spans whose parent is not in the store (sampled elsewhere, or still in flight) are
    shown as roots, so nothing is hidden.
    """
    if not spans:
        return ""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[StoredSpan]] = defaultdict(list)
    for span in spans:
        children[span.parent_id if span.parent_id in ids else None].append(span)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    when = datetime.datetime.fromtimestamp(start / 1e9).strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"trace {spans[0].trace_id}  {when}  {len(spans)} spans  {(end - start) / 1e6:.2f} ms"]

    def walk(span: StoredSpan, prefix: str, last: bool) -> None:
        branch = "└─ " if last else "├─ "
        lines.append(f"{prefix}{branch}{_describe(span, start)}")
        kids = sorted(children.get(span.span_id, []), key=lambda s: s.start_ns)
        for i, kid in enumerate(kids):
            walk(kid, prefix + ("   " if last else "│  "), i == len(kids) - 1)

    roots = sorted(children[None], key=lambda s: s.start_ns)
    for i, root in enumerate(roots):
        walk(root, "", i == len(roots) - 1)
    return "\n".join(lines)


def _describe(span: StoredSpan, trace_start: int) -> str:
    detail = next((str(span.attributes[k]) for k in _DETAIL_KEYS if k in span.attributes), "")
    status = span.attributes.get("http.response.status_code")
    parts = [
        f"[{span.service}]",
        span.kind.lower(),
        span.name,
        f"{detail}" if detail and detail not in span.name else "",
        f"-> {status}" if status is not None else "",
        "ERROR" if span.status == "ERROR" else "",
        f"{span.duration_ms:.2f} ms",
        f"(+{(span.start_ns - trace_start) / 1e6:.2f} ms)",
    ]
    return "  ".join(p for p in parts if p)

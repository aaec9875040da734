"""`outrig traces`: recent traces from the local trace store, as trees."""

from __future__ import annotations

import sys
from pathlib import Path

from outrig.telemetry import TraceStore, render_trace, trace_store_path


def print_traces(home: Path, limit: int, trace_id: str | None, app_id: str | None) -> int:
    path = trace_store_path(home)
    if not path.exists():
        print(f"no traces yet: {path} does not exist (run `outrig demo` or a sidecar first)", file=sys.stderr)
        return 1
    store = TraceStore(path)
    try:
        if trace_id:
            ids = store.matching_trace_ids(trace_id)
            if len(ids) > 1:
                print(f"trace id prefix {trace_id!r} is ambiguous: {', '.join(ids)}", file=sys.stderr)
                return 1
        else:
            ids = list(reversed(store.recent_trace_ids(limit, app_id)))
        shown = 0
        for tid in ids:
            spans = store.spans(tid)
            if spans:
                print(render_trace(spans) + "\n")
                shown += 1
        if not shown:
            print("no matching traces", file=sys.stderr)
            return 1
        return 0
    finally:
        store.close()

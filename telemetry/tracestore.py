"""The local trace store: spans of every sidecar on this machine, in one SQLite file.

The embedded default when no collector is configured, so `outrig run` and
`outrig traces` work with nothing else installed. Written by each sidecar's telemetry
agent (never on a request's path); WAL mode lets several agents write at once.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from .wire import span_to_row

SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    links TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id);
CREATE INDEX IF NOT EXISTS spans_by_end ON spans (end_ns);
"""

DEFAULT_MAX_SPANS = 200_000
"""Older spans are pruned past this many rows, so the file stays small."""


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


@dataclass(frozen=True, slots=True)
class StoredSpan:
    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, str]]

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


Row = tuple[object, ...]
_KIND_NAMES = {kind.value: kind.name for kind in SpanKind}
_STATUS_NAMES = {code.value: code.name for code in StatusCode}


def store_row(wire: tuple[Any, ...], service: str) -> Row:
    """A store row straight from a wire row (see `wire.span_to_row`), with no span object."""
    (trace_id, span_id, _flags, parent_id, _remote, name, kind, start, end, status, _desc,
     attributes, events, links, _scope) = wire  # fmt: skip
    return (
        f"{trace_id:032x}",
        f"{span_id:016x}",
        f"{parent_id:016x}" if parent_id else None,
        service,
        name,
        _KIND_NAMES[kind],
        start,
        end,
        _STATUS_NAMES[status],
        json.dumps(attributes, default=str),
        json.dumps(
            [{"name": n, "time_ns": ts, "attributes": a} for n, ts, a in events],
            default=str,
        )
        if events
        else "[]",
        json.dumps([{"trace_id": f"{t:032x}", "span_id": f"{s:016x}"} for t, s, _ in links])
        if links
        else "[]",
    )


def _service(span: ReadableSpan) -> str:
    return str(span.resource.attributes.get("service.name", "unknown"))


class TraceStoreExporter(SpanExporter):
    """A span exporter writing to the local store (batched by the caller's span processor)."""

    def __init__(self, path: Path, max_spans: int = DEFAULT_MAX_SPANS) -> None:
        self.path = path
        self.max_spans = max_spans
        self._conn = connect(path)
        self._lock = threading.Lock()
        self._prune_every = max(1, max_spans // 10)
        self._since_prune = 0
        with self._lock:
            self._prune()

    def _prune(self) -> None:
        self._conn.execute(
            "DELETE FROM spans WHERE rowid <= (SELECT MAX(rowid) FROM spans) - ?", (self.max_spans,)
        )
        self._since_prune = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.write([store_row(span_to_row(span), _service(span)) for span in spans])

    def write(self, rows: Sequence[Row]) -> SpanExportResult:
        with self._lock:
            try:
                # IMMEDIATE takes the write lock up front, so a busy file makes us wait
                # (up to the connection's timeout) instead of failing at COMMIT.
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany("INSERT INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                self._since_prune += len(rows)
                if self._since_prune >= self._prune_every:
                    self._prune()
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._conn.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class TraceStore:
    """Reads traces back from the local store."""

    def __init__(self, path: Path) -> None:
        self._conn = connect(path)

    def close(self) -> None:
        self._conn.close()

    def recent_trace_ids(self, limit: int, service: str | None = None) -> list[str]:
        """The ids of the `limit` traces that ended most recently, newest first."""
        where, params = ("WHERE service = ?", [service]) if service else ("", [])
        rows = self._conn.execute(
            f"SELECT trace_id FROM spans {where} GROUP BY trace_id ORDER BY MAX(end_ns) DESC LIMIT ?",
            [*params, limit],
        )
        return [row[0] for row in rows]

    def matching_trace_ids(self, prefix: str, limit: int = 5) -> list[str]:
        prefix = prefix.lower()
        rows = self._conn.execute(
            "SELECT DISTINCT trace_id FROM spans WHERE trace_id >= ? AND trace_id < ? LIMIT ?",
            (prefix, prefix + "g", limit),
        )
        return [row[0] for row in rows]

    def spans(self, trace_id: str) -> list[StoredSpan]:
        """Every stored span of one trace (its full id), oldest first."""
        rows = self._conn.execute(
            "SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id.lower(),)
        )
        return [
            StoredSpan(
                trace_id=r[0],
                span_id=r[1],
                parent_id=r[2],
                service=r[3],
                name=r[4],
                kind=r[5],
                start_ns=r[6],
                end_ns=r[7],
                status=r[8],
                attributes=json.loads(r[9]),
                events=json.loads(r[10]),
                links=json.loads(r[11]),
            )
            for r in rows
        ]

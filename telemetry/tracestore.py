"""The local trace store: spans of every sidecar on this machine, in one SQLite file.

The embedded default when no collector is configured, so `outrig run` and
`outrig traces` work with nothing else installed. WAL mode lets several sidecars write
at once.

`TraceStoreProcessor` turns each ended span into a row on the thread that ended it (a
few microseconds) and leaves only SQLite's own `executemany` to a writer thread. A
`BatchSpanProcessor` would do the Python-heavy conversion on its thread instead, which
then fights the event loop for the GIL and added 10+ ms to p90 latency in
benchmarks/invoke.py.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger("outrig.telemetry")

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

CHECKPOINT_SECONDS = 5.0
BUSY_TIMEOUT_MS = 100
"""How long a write waits for another sidecar's write; on time-out the rows wait for the
next write instead (a request thread must never wait long on the file)."""


def connect(path: Path, writer: bool = False) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    if writer:
        # Checkpoints (which fsync) run on the housekeeping thread, not in a commit.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
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


def _row(span: ReadableSpan) -> Row:
    ctx = span.get_span_context()
    assert ctx is not None
    parent = span.parent
    service = span.resource.attributes.get("service.name", "unknown")
    events = "[]"
    if span.events:
        events = json.dumps(
            [
                {"name": e.name, "time_ns": e.timestamp, "attributes": dict(e.attributes or {})}
                for e in span.events
            ],
            default=str,
        )
    links = "[]"
    if span.links:
        links = json.dumps(
            [
                {"trace_id": f"{lk.context.trace_id:032x}", "span_id": f"{lk.context.span_id:016x}"}
                for lk in span.links
            ]
        )
    return (
        f"{ctx.trace_id:032x}",
        f"{ctx.span_id:016x}",
        f"{parent.span_id:016x}" if parent is not None else None,
        str(service),
        span.name,
        span.kind.name,
        span.start_time or 0,
        span.end_time or 0,
        span.status.status_code.name,
        json.dumps(dict(span.attributes or {}), default=str),
        events,
        links,
    )


class TraceStoreExporter(SpanExporter):
    """A span exporter writing to the local store (batched by the caller's span processor)."""

    def __init__(self, path: Path, max_spans: int = DEFAULT_MAX_SPANS) -> None:
        self.path = path
        self.max_spans = max_spans
        self._conn = connect(path, writer=True)
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
        return self.write([_row(span) for span in spans])

    def write(self, rows: Sequence[Row]) -> SpanExportResult:
        try:
            with self._lock:
                self._conn.execute("BEGIN")
                self._conn.executemany("INSERT INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                self._since_prune += len(rows)
                if self._since_prune >= self._prune_every:
                    self._prune()
                self._conn.execute("COMMIT")
        except sqlite3.Error:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def checkpoint(self) -> None:
        try:
            with self._lock:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.debug("trace store checkpoint skipped: %s", exc)

    def shutdown(self) -> None:
        with self._lock:
            self._conn.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class TraceStoreProcessor(SpanProcessor):
    """Writes ended spans to the store in small batches, inline, never from a busy thread.

    On CPython a background thread doing Python work (a `BatchSpanProcessor` converting
    and inserting 512 spans) convoys the GIL against the event loop: every socket call
    of the loop then waits for it, which added 10-15 ms to p90 latency in
    benchmarks/invoke.py. So rows are made where spans end (a few microseconds each) and
    written by that same thread every `delay` seconds or `batch` rows, about a
    millisecond per write. A helper thread only writes what an idle period left behind
    and checkpoints the WAL (one C call, the GIL released throughout).

    Bounded: past `max_queue` unwritten rows (say, the file is locked for long), new
    spans are dropped and counted, so the store can never grow memory or stall a request.
    """

    def __init__(
        self,
        exporter: TraceStoreExporter,
        *,
        delay: float | None = None,
        batch: int = 64,
        max_queue: int = 8192,
    ) -> None:
        self.exporter = exporter
        self.batch = batch
        self.max_queue = max_queue
        env_delay = os.environ.get("OTEL_BSP_SCHEDULE_DELAY")
        self.delay = delay if delay is not None else min(0.05, float(env_delay or 50) / 1000)
        self.dropped = 0
        self._rows: list[Row] = []
        self._lock = threading.Lock()
        self._last_write = time.monotonic()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._housekeeping, name="outrig-trace-store", daemon=True)
        self._thread.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context or not span.context.trace_flags.sampled:
            return
        row = _row(span)
        with self._lock:
            if len(self._rows) >= self.max_queue:
                self.dropped += 1
                return
            self._rows.append(row)
            if len(self._rows) >= self.batch or time.monotonic() - self._last_write >= self.delay:
                self._write_locked()

    def _write_locked(self) -> None:
        self._last_write = time.monotonic()
        if self._rows and self.exporter.write(self._rows) is SpanExportResult.SUCCESS:
            self._rows = []

    def _housekeeping(self) -> None:
        checkpoint_at = time.monotonic() + CHECKPOINT_SECONDS
        while not self._stopping.wait(self.delay):
            with self._lock:
                if self._rows and time.monotonic() - self._last_write >= self.delay:
                    self._write_locked()
            if time.monotonic() >= checkpoint_at:
                self.exporter.checkpoint()
                checkpoint_at = time.monotonic() + CHECKPOINT_SECONDS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._lock:
            self._write_locked()
            return not self._rows

    def shutdown(self) -> None:
        self._stopping.set()
        self._thread.join(10)
        self.force_flush()
        if self.dropped:
            log.warning("local trace store dropped %d spans (queue full)", self.dropped)
        self.exporter.checkpoint()
        self.exporter.shutdown()


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

    def spans(self, trace_id: str) -> list[StoredSpan]:
        """Every stored span of one trace (a prefix of the id is enough), oldest first."""
        rows = self._conn.execute(
            "SELECT * FROM spans WHERE trace_id >= ? AND trace_id < ? ORDER BY start_ns",
            (trace_id, trace_id + "g"),
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

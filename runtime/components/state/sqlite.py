"""`state.sqlite`: a durable store in one SQLite file that sidecars on a machine can share.

The embedded default: with no state component configured, `statestore` is this store at
`$OUTRIG_HOME/state.db`. Calls run on one worker thread per store (SQLite releases the
GIL while it works), and each write batch is one `BEGIN IMMEDIATE` transaction, so etag
checks and writes are atomic even between processes.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..metadata import text
from .base import Delete, EtagMismatchError, Operation, StateError, Stored, Upsert, etag_allows
from .query import QUERY_FEATURE, Query, QueryPage, run_query

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    etag TEXT NOT NULL,
    expires_at REAL
)
"""


class SqliteStore:
    features = frozenset({"ETAG", "TRANSACTIONAL", "TTL", QUERY_FEATURE})

    def __init__(self, path: Path, busy_timeout: float = 10.0) -> None:
        self.path = path
        self.span_attributes: Mapping[str, str | int] = {
            "db.system.name": "sqlite",
            "db.namespace": str(path),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(
                path, timeout=busy_timeout, check_same_thread=False, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(SCHEMA)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open sqlite database {path}: {exc}") from None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"state-sqlite-{path.name}")

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any], home: Path) -> SqliteStore:
        return cls(Path(text(metadata, "databasePath", str(home / "state.db"))).expanduser())

    async def _run(self, work: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except sqlite3.Error as exc:
            raise StateError(f"sqlite store {self.path}: {exc}") from exc

    def _get(self, key: str) -> Stored | None:
        row = self._conn.execute(
            "SELECT value, etag FROM state WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
            (key, time.time()),
        ).fetchone()
        return None if row is None else Stored(key, bytes(row[0]), row[1])

    async def get(self, key: str) -> Stored | None:
        return await self._run(lambda: self._get(key))

    async def bulk_get(self, keys: Sequence[str]) -> list[Stored | None]:
        return await self._run(lambda: [self._get(key) for key in keys])

    def _apply(self, operations: Sequence[Operation], atomic: bool) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in operations:
                current = self._get(op.key)
                if op.checks_etag and not etag_allows(op, current.etag if current else None):
                    raise EtagMismatchError(f"etag mismatch for key {op.key!r}")
                if isinstance(op, Upsert):
                    expires = time.time() + op.ttl_seconds if op.ttl_seconds and op.ttl_seconds > 0 else None
                    conn.execute(
                        "INSERT OR REPLACE INTO state (key, value, etag, expires_at) VALUES (?, ?, ?, ?)",
                        (op.key, op.value, secrets.token_hex(8), expires),
                    )
                elif isinstance(op, Delete):
                    conn.execute("DELETE FROM state WHERE key = ?", (op.key,))
                if not atomic:
                    conn.execute("COMMIT")
                    conn.execute("BEGIN IMMEDIATE")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def apply(self, operations: Sequence[Operation], *, atomic: bool) -> None:
        await self._run(lambda: self._apply(operations, atomic))

    def _query(self, prefix: str, query: Query) -> QueryPage:
        where, params = _prefix_range(prefix)
        rows = self._conn.execute(
            f"SELECT key, value, etag FROM state WHERE {where}(expires_at IS NULL OR expires_at > ?)",
            (*params, time.time()),
        ).fetchall()
        return run_query(query, ((key, bytes(value), etag) for key, value, etag in rows), prefix)

    async def query(self, prefix: str, query: Query) -> QueryPage:
        """Dapr's alpha query: reads every live key of the app and evaluates in Python
        (`query.py`). A scan of one app's keys, which is fine for the embedded store; a
        store for large data sets would translate the query to SQL instead."""
        return await self._run(lambda: self._query(prefix, query))

    async def ping(self) -> None:
        await self._run(lambda: self._conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        await self._run(self._conn.close)
        self._executor.shutdown(wait=True)


def _prefix_range(prefix: str) -> tuple[str, tuple[Any, ...]]:
    """A WHERE clause (ending in AND) for keys starting with `prefix`: a range on the
    primary key, so SQLite seeks to the app's keys instead of scanning every app's, and
    no LIKE pattern to escape. TEXT compares as UTF-8 bytes, i.e. by code point."""
    if not prefix:
        return "", ()
    last = ord(prefix[-1])
    if last < 0xD7FF or 0xE000 <= last < 0x10FFFF:  # the next code point is encodable
        return "key >= ? AND key < ? AND ", (prefix, prefix[:-1] + chr(last + 1))
    return "substr(key, 1, ?) = ? AND ", (len(prefix), prefix)

"""`state.in-memory`: a process-local store, for tests and throwaway runs (as Dapr's)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Delete, EtagMismatchError, Operation, Stored, Upsert, etag_allows
from .query import QUERY_FEATURE, Query, QueryPage, run_query


class MemoryStore:
    features = frozenset({"ETAG", "TRANSACTIONAL", "TTL", QUERY_FEATURE})

    def __init__(self) -> None:
        self.span_attributes: Mapping[str, str | int] = {"db.system.name": "memory", "db.namespace": "memory"}
        self._items: dict[str, tuple[bytes, str, float | None]] = {}

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any], home: Any) -> MemoryStore:
        return cls()

    def _live(self, key: str) -> tuple[bytes, str, float | None] | None:
        item = self._items.get(key)
        if item is not None and item[2] is not None and item[2] <= time.time():
            del self._items[key]
            return None
        return item

    async def get(self, key: str) -> Stored | None:
        item = self._live(key)
        return None if item is None else Stored(key, item[0], item[1])

    async def bulk_get(self, keys: Sequence[str]) -> list[Stored | None]:
        return [await self.get(key) for key in keys]

    async def apply(self, operations: Sequence[Operation], *, atomic: bool) -> None:
        # No await below, so no other call interleaves; atomic batches roll back on failure.
        before = dict(self._items) if atomic else None
        try:
            self._apply(operations)
        except EtagMismatchError:
            if before is not None:
                self._items = before
            raise

    def _apply(self, operations: Sequence[Operation]) -> None:
        for op in operations:
            current = self._live(op.key)
            if op.checks_etag and not etag_allows(op, current[1] if current else None):
                raise EtagMismatchError(f"etag mismatch for key {op.key!r}")
            if isinstance(op, Upsert):
                expires = time.time() + op.ttl_seconds if op.ttl_seconds and op.ttl_seconds > 0 else None
                self._items[op.key] = (op.value, secrets.token_hex(8), expires)
            elif isinstance(op, Delete):
                self._items.pop(op.key, None)

    async def query(self, prefix: str, query: Query) -> QueryPage:
        """Dapr's alpha query over the live keys under `prefix` (see `query.py`)."""
        now = time.time()
        rows = (
            (key, value, etag)
            for key, (value, etag, expires) in self._items.items()
            if key.startswith(prefix) and (expires is None or expires > now)
        )
        return run_query(query, rows, prefix)

    async def ping(self) -> None:
        """Always reachable: it lives in this process."""

    async def close(self) -> None:
        self._items.clear()

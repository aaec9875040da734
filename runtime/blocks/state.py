"""State management: Dapr's state operations over pluggable stores.

The block receives protocol-neutral requests (`call.request`, decoded from the HTTP body
and later the gRPC one), prefixes keys as Dapr does, and runs each store operation as a
call of its own through the store's component pipeline (a CLIENT span on the database
conventions, later resiliency), so the trace reads API span -> store span.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from outrig.middleware import Call, CallError, Hop, Pipeline, Result

from ..components.state import Delete, EtagMismatchError, Operation, StateError, StateStore, Stored, Upsert
from ..components.state.query import Query, supports_query
from .requests import request_of

if TYPE_CHECKING:
    from .outbox import Outbox

KEY_SEPARATOR = "||"


@dataclass(frozen=True)
class GetRequest:
    key: str


@dataclass(frozen=True)
class BulkGetRequest:
    keys: Sequence[str]


@dataclass(frozen=True)
class WriteRequest:
    """Saves and deletes for one store: `atomic` for transactions, in order either way."""

    operations: Sequence[Operation]
    atomic: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryRequest:
    """Dapr's alpha state query, already parsed and validated by the adapter."""

    query: Query


@dataclass
class StoreEntry:
    name: str
    type: str
    """The Dapr type name it was configured with, e.g. `state.in-memory`."""
    store: StateStore
    pipeline: Pipeline
    key_prefix: str
    stored_prefix: str = field(init=False)
    """What every key of this app starts with in the store: `appid||`, or nothing."""
    outbox: Outbox | None = None
    """Set when the store's metadata asks for Dapr's transactional outbox."""

    def __post_init__(self) -> None:
        self.stored_prefix = f"{self.key_prefix}{KEY_SEPARATOR}" if self.key_prefix else ""

    def full_key(self, key: str) -> str:
        if not key:
            raise CallError("ERR_MALFORMED_REQUEST", "a state key must not be empty", 400)
        if KEY_SEPARATOR in key:
            raise CallError(
                "ERR_MALFORMED_REQUEST", f"input key {key!r} can't contain {KEY_SEPARATOR!r}", 400,
                reason="DAPR_STATE_ILLEGAL_KEY",
            )  # fmt: skip
        return self.stored_prefix + key


def key_prefix(mode: str | None, app_id: str, store_name: str) -> str:
    """Dapr's `keyPrefix` metadata: appid (default), name, none, or a custom prefix."""
    if mode in (None, "", "appid"):
        return app_id
    if mode == "name":
        return store_name
    if mode == "none":
        return ""
    if KEY_SEPARATOR in mode:
        raise ValueError(f"keyPrefix {mode!r} can't contain {KEY_SEPARATOR!r}")
    return mode


_ERROR_CODES = {"get": "ERR_STATE_GET", "bulk_get": "ERR_STATE_BULK_GET", "query": "ERR_STATE_QUERY"}


class StateBlock:
    """The endpoint of inbound pipelines for `state` calls."""

    def __init__(self, stores: Mapping[str, StoreEntry]) -> None:
        self.stores = stores

    async def __call__(self, call: Call) -> Result:
        entry = self.stores.get(call.target)
        if entry is None:
            names = ", ".join(sorted(self.stores)) or "none"
            raise CallError(
                "ERR_STATE_STORE_NOT_FOUND",
                f"state store {call.target} is not found (configured: {names})",
                400,
            )
        request = await request_of(call)
        if isinstance(request, GetRequest):
            full = entry.full_key(request.key)
            stored = await self._store_call(entry, call, "get", "GET", full, full)
            return Result(200, value=stored)
        if isinstance(request, BulkGetRequest):
            fulls = [entry.full_key(key) for key in request.keys]
            found = await self._store_call(entry, call, "bulk_get", "BULK_GET", "", fulls)
            return Result(200, value=[(key, item) for key, item in zip(request.keys, found, strict=True)])
        if isinstance(request, WriteRequest):
            operations = [_with_key(op, entry.full_key(op.key)) for op in request.operations]
            name = "TRANSACTION" if request.atomic else ("DELETE" if call.operation == "delete" else "SET")
            outbox = entry.outbox if request.atomic else None
            if outbox is None:
                await self._store_call(entry, call, "apply", name, "", (operations, request.atomic))
                return Result(204)
            marker, upsert = await outbox.prepare(operations, call.metadata)
            try:
                await self._store_call(entry, call, "apply", name, "", ([*operations, upsert], True))
            except CallError as error:
                if error.status == 409:  # certainly not applied (a lost reply may hide a commit)
                    outbox.failed(marker)
                raise
            return Result(204)
        if isinstance(request, QueryRequest):
            if not supports_query(entry.store):
                able = (
                    ", ".join(sorted(n for n, e in self.stores.items() if supports_query(e.store))) or "none"
                )
                raise CallError(
                    "ERR_STATE_STORE_NOT_SUPPORTED",
                    f"state store {entry.name} ({entry.type}) does not support querying"
                    f" (configured stores that do: {able})",
                    500,
                    reason="DAPR_STATE_QUERYING_NOT_SUPPORTED",
                )
            query = (entry.stored_prefix, request.query)
            page = await self._store_call(entry, call, "query", "QUERY", "", query)
            return Result(200, value=page)
        raise CallError("ERR_MALFORMED_REQUEST", f"unknown state request {type(request).__name__}", 400)

    async def _store_call(
        self, entry: StoreEntry, call: Call, operation: str, db_operation: str, key: str, request: object
    ) -> Any:
        attributes = {**entry.store.span_attributes, "db.operation.name": db_operation}
        outbound = Call(
            block="state", operation=operation, target=entry.name, subject=key, hop=Hop.COMPONENT,
            route="", metadata=call.metadata, request=request, attributes=attributes,
        )  # fmt: skip
        result = await entry.pipeline(outbound)
        return result.value


def _with_key(op: Operation, key: str) -> Operation:
    if isinstance(op, Upsert):
        return Upsert(key, op.value, op.etag, op.concurrency, op.ttl_seconds, op.metadata)
    return Delete(key, op.etag, op.concurrency)


class StoreEndpoint:
    """The end of a store's component pipeline: one store operation, errors as Dapr's."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def __call__(self, call: Call) -> Result:
        try:
            if call.operation == "get":
                return Result(200, value=await self.store.get(call.request))
            if call.operation == "bulk_get":
                return Result(200, value=await self.store.bulk_get(call.request))
            if call.operation == "query":
                if not supports_query(self.store):  # the block checks first; this keeps the types honest
                    raise StateError("this store does not support querying")
                prefix, query = call.request
                return Result(200, value=await self.store.query(prefix, query))
            operations, atomic = call.request
            await self.store.apply(operations, atomic=atomic)
            return Result(204)
        except EtagMismatchError as exc:
            raise CallError(_write_code(call), f"possible etag mismatch: {exc}", 409) from exc
        except StateError as exc:
            code = _ERROR_CODES.get(call.operation) or _write_code(call)
            raise CallError(code, f"state store {call.target}: {exc}", 500) from exc


def _write_code(call: Call) -> str:
    operations, atomic = call.request if call.operation == "apply" else ((), False)
    if atomic:
        return "ERR_STATE_TRANSACTION"
    if operations and all(isinstance(op, Delete) for op in operations):
        return "ERR_STATE_DELETE"
    return "ERR_STATE_SAVE"


def render_items(found: Sequence[tuple[str, Stored | None]]) -> list[dict[str, Any]]:
    """Bulk-get results in Dapr's shape: `{key, data, etag}`, or just `{key}` when missing."""
    out: list[dict[str, Any]] = []
    for key, item in found:
        if item is None:
            out.append({"key": key})
            continue
        try:
            data: Any = json.loads(item.value)
        except ValueError:
            data = item.value.decode("utf-8", "replace")
        out.append({"key": key, "data": data, "etag": item.etag})
    return out


def ttl_in_seconds(metadata: Mapping[str, Any], where: str) -> int | None:
    """A state write's `metadata.ttlInSeconds`, checked the same for the HTTP and gRPC APIs."""
    raw = metadata.get("ttlInSeconds")
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        message = f"{where}: metadata.ttlInSeconds must be a whole number of seconds, got {raw!r}"
        field = f"{where}.metadata.ttlInSeconds"
        raise CallError("ERR_MALFORMED_REQUEST", message, 400, field_violations=[(field, message)]) from None

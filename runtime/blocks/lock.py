"""Distributed lock: Dapr's alpha lock API over pluggable lock stores.

Resource ids are prefixed as Dapr prefixes them (`keyPrefix`: `lock||appid||id` by
default, so two apps lock different resources unless their stores say `name`, `none` or a
prefix of their own), and each store operation is a call of its own through the store's
component pipeline (metrics, resiliency, a CLIENT span `SET lockstore`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outrig.middleware import Call, CallError, Hop, Next, Pipeline, Result

from .. import assembly
from ..components.lock import LOCK_TYPES, LockError, LockStore, UnlockStatus
from ..resources import Resources
from .requests import request_of
from .state import KEY_SEPARATOR, key_prefix

LOCK_PREFIX = "lock"


@dataclass(frozen=True)
class TryLockRequest:
    resource_id: str
    owner: str
    expiry_seconds: int


@dataclass(frozen=True)
class UnlockRequest:
    resource_id: str
    owner: str


@dataclass
class LockEntry:
    name: str
    type: str
    store: LockStore
    pipeline: Pipeline
    key_prefix: str

    def key(self, resource_id: str) -> str:
        """Dapr's layout: `lock||<prefix>||<resource>`, or `lock||<resource>` with no prefix."""
        if KEY_SEPARATOR in resource_id:
            raise CallError(
                "ERR_MALFORMED_REQUEST",
                f"resourceId {resource_id!r} can't contain {KEY_SEPARATOR!r} (lock store {self.name})",
                400,
            )
        parts = [LOCK_PREFIX, self.key_prefix, resource_id] if self.key_prefix else [LOCK_PREFIX, resource_id]
        return KEY_SEPARATOR.join(parts)


def lock_stores(
    resources: Resources,
    app_id: str,
    home: Path,
    component_pipeline: Callable[[str, str, Next], Pipeline],
) -> dict[str, LockEntry]:
    """The configured `lock.*` components, each with its component pipeline (none by default)."""
    return {
        c.name: _entry(assembly.ComponentSpec(c.name, c.type, c.resource.settings(), c), app_id, home,
                       component_pipeline)
        for c in resources.components
        if c.type in LOCK_TYPES
    }  # fmt: skip


def _entry(
    spec: assembly.ComponentSpec,
    app_id: str,
    home: Path,
    component_pipeline: Callable[[str, str, Next], Pipeline],
) -> LockEntry:
    create = LOCK_TYPES[spec.type].create
    prefix = assembly.build(
        spec, "lock store", lambda: key_prefix(spec.settings.get("keyPrefix"), app_id, spec.name), ()
    )
    store = assembly.build(spec, "lock store", lambda: create(spec.name, spec.settings, home), (LockError,))
    pipeline = component_pipeline(spec.name, spec.type, LockEndpoint(store))
    return LockEntry(spec.name, spec.type, store, pipeline, prefix)


class LockBlock:
    """The endpoint of inbound pipelines for `lock` calls (`try_lock`, `unlock`)."""

    def __init__(self, stores: Mapping[str, LockEntry]) -> None:
        self.stores = stores

    async def __call__(self, call: Call) -> Result:
        if not self.stores:
            raise CallError(
                "ERR_LOCK_STORE_NOT_CONFIGURED",
                f"lock store {call.target} is not configured: no lock.* component is loaded "
                "(add a Component of type lock.redis to a --resources-path folder)",
                500,
            )
        entry = self.stores.get(call.target)
        if entry is None:
            names = ", ".join(sorted(self.stores))
            raise CallError(
                "ERR_LOCK_STORE_NOT_FOUND", f"lock store {call.target} not found (configured: {names})", 400
            )
        request = await request_of(call)
        if isinstance(request, TryLockRequest):
            key = entry.key(request.resource_id)
            taken = await _store_call(entry, call, "try_lock", "SET", key, request)
            return Result(200, value=bool(taken))
        if isinstance(request, UnlockRequest):
            key = entry.key(request.resource_id)
            status = await _store_call(entry, call, "unlock", "UNLOCK", key, request)
            return Result(200, value=status)
        raise CallError("ERR_MALFORMED_REQUEST", f"unknown lock request {type(request).__name__}", 400)


async def _store_call(
    entry: LockEntry, call: Call, operation: str, db_operation: str, key: str, request: object
) -> Any:
    attributes = {**entry.store.span_attributes, "db.operation.name": db_operation}
    outbound = Call(
        block="lock", operation=operation, target=entry.name, subject=key, hop=Hop.COMPONENT, route="",
        metadata=call.metadata, request=(key, request), attributes=attributes,
    )  # fmt: skip
    result = await entry.pipeline(outbound)
    return result.value


class LockEndpoint:
    """The end of a lock store's component pipeline: one store operation, errors as Dapr's."""

    def __init__(self, store: LockStore) -> None:
        self.store = store

    async def __call__(self, call: Call) -> Result:
        key, request = call.request
        try:
            if isinstance(request, TryLockRequest):
                taken = await self.store.try_lock(key, request.owner, request.expiry_seconds)
                return Result(200, value=taken)
            status: UnlockStatus = await self.store.unlock(key, request.owner)
            return Result(200, value=status)
        except LockError as exc:
            if isinstance(request, TryLockRequest):
                raise CallError("ERR_TRY_LOCK", f"failed to try acquiring lock: {exc}", 500) from exc
            raise CallError("ERR_UNLOCK", f"failed to release lock: {exc}", 500) from exc

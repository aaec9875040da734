"""The state store interface every `state.*` component implements, and its data types.

Semantics follow Dapr's (components-contrib conformance, state.go):
- an etag given on a write must match the stored one, else `EtagMismatchError`;
- `first-write` without an etag means "only if the key does not exist yet";
- an explicit `last-write` ignores any etag given (unspecified concurrency checks it);
- `ttl_seconds` > 0 expires the key; -1 or None keeps it for ever;
- a transaction applies all of its operations or none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

Concurrency = Literal["first-write", "last-write"] | None


class StateError(Exception):
    """A store failure other than a conflict (unreachable, corrupt data, ...)."""


class EtagMismatchError(StateError):
    """The write or delete named an etag that is not the stored one (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class Stored:
    key: str
    value: bytes
    etag: str


@dataclass(frozen=True, slots=True)
class Upsert:
    key: str
    value: bytes
    etag: str | None = None
    concurrency: Concurrency = None
    ttl_seconds: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def checks_etag(self) -> bool:
        if self.concurrency == "last-write":
            return False
        return self.etag is not None or self.concurrency == "first-write"


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    etag: str | None = None
    concurrency: Concurrency = None

    @property
    def checks_etag(self) -> bool:
        return self.etag is not None and self.concurrency != "last-write"


Operation = Upsert | Delete


def etag_allows(op: Operation, current: str | None) -> bool:
    """Whether `op` may proceed given the stored etag (None: the key does not exist)."""
    if not op.checks_etag:
        return True
    if op.etag is None:  # first-write without an etag: only a new key
        return current is None
    return current is not None and op.etag == current


class StateStore(Protocol):
    """A state component. Keys arrive already prefixed (`appid||key`)."""

    span_attributes: Mapping[str, str | int]
    """Database attributes for its CLIENT spans: `db.system.name`, `db.namespace`, and
    `server.address`/`server.port` for a networked store."""
    features: frozenset[str]
    """Dapr's feature names: ETAG, TRANSACTIONAL, TTL, QUERY_API."""

    async def get(self, key: str) -> Stored | None: ...

    async def bulk_get(self, keys: Sequence[str]) -> list[Stored | None]: ...

    async def apply(self, operations: Sequence[Operation], *, atomic: bool) -> None:
        """Apply upserts and deletes in order; all-or-nothing when `atomic`, raising
        `EtagMismatchError` (nothing applied) when any etag check fails."""
        ...

    async def ping(self) -> None:
        """Raise `StateError` if the store cannot be reached now (checked at start, to warn)."""
        ...

    async def close(self) -> None: ...


class StoreType(Protocol):
    """A store class, built from its component's metadata."""

    def create(self, name: str, metadata: Mapping[str, Any], home: Path) -> StateStore: ...

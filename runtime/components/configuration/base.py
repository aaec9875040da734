"""The interface every `configuration.*` component implements, and its data types.

A configuration store is read-only for apps: items are written with the store's own tools
(redis-cli, an operator), read by key (or all at once), and watched. A watch reports that
keys changed (and when the store may have missed changes, e.g. after a reconnect); the
runtime reads the new values itself, so what the app receives is always the stored value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class ConfigurationError(Exception):
    """The store failed (unreachable, refused the command, ...)."""


@dataclass(frozen=True, slots=True)
class Item:
    """One configuration item, as Dapr returns it: `{value, version, metadata}`."""

    value: str
    version: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "version": self.version, "metadata": dict(self.metadata)}


@dataclass(frozen=True, slots=True)
class Change:
    """`key` changed (`event` is the store's name for what happened: set, del, expired, ...).
    An empty key with event `RESYNC` means: changes may have been missed (a reconnect);
    re-read every key watched."""

    key: str
    event: str


RESYNC = "resync"
DELETED_EVENTS = frozenset({"del", "expired", "evicted", "rename_from"})
"""Events after which the key no longer holds a value."""

ChangeHandler = Callable[[Change], None]
"""Told of each change, in order; must not block (the runtime queues the work)."""


class Watch(Protocol):
    """A running watch of some keys (or all of them)."""

    async def close(self) -> None: ...


class ConfigurationStore(Protocol):
    span_attributes: Mapping[str, str | int]
    """Database attributes for its CLIENT spans (`db.system.name`, `server.address`, ...)."""

    async def get(self, keys: Sequence[str]) -> dict[str, Item]:
        """The items of `keys` that exist (all items when `keys` is empty)."""
        ...

    async def watch(self, keys: Sequence[str], handler: ChangeHandler) -> Watch:
        """Start reporting changes of `keys` (all keys when empty); returns once the
        store is listening, so a change made after it returns is reported."""
        ...

    async def ping(self) -> None:
        """Raise `ConfigurationError` if the store cannot be reached now."""
        ...

    async def close(self) -> None: ...


class ConfigurationStoreType(Protocol):
    def create(self, name: str, metadata: Mapping[str, Any], home: Path) -> ConfigurationStore: ...

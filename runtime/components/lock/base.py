"""The interface every `lock.*` component implements.

A lock is a lease: `try_lock` takes it for `expiry_seconds` if nobody holds it, and only
its owner can release it before then. Keys arrive already prefixed by the runtime
(`lock||appid||resource`), as Dapr lays them out.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol


class LockError(Exception):
    """The store failed (unreachable, refused the command, ...)."""


class UnlockStatus(enum.IntEnum):
    """Dapr's `UnlockResponse.Status`, sent as its number over HTTP."""

    SUCCESS = 0
    LOCK_DOES_NOT_EXIST = 1
    LOCK_BELONGS_TO_OTHERS = 2
    INTERNAL_ERROR = 3


class LockStore(Protocol):
    span_attributes: Mapping[str, str | int]

    async def try_lock(self, key: str, owner: str, expiry_seconds: int) -> bool:
        """Take the lock for `owner` unless someone holds it; True if taken."""
        ...

    async def unlock(self, key: str, owner: str) -> UnlockStatus: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class LockStoreType(Protocol):
    def create(self, name: str, metadata: Mapping[str, Any], home: Path) -> LockStore: ...

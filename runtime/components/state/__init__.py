"""State stores by Dapr type name."""

from ..metadata import MetadataError
from .base import (
    Delete,
    EtagMismatchError,
    Operation,
    StateError,
    StateStore,
    Stored,
    StoreType,
    Upsert,
)
from .memory import MemoryStore
from .redis import RedisStore
from .sqlite import SqliteStore

STORE_TYPES: dict[str, StoreType] = {
    "state.in-memory": MemoryStore,
    "state.redis": RedisStore,
    "state.sqlite": SqliteStore,
}

__all__ = [
    "STORE_TYPES",
    "Delete",
    "EtagMismatchError",
    "MemoryStore",
    "MetadataError",
    "Operation",
    "RedisStore",
    "SqliteStore",
    "StateError",
    "StateStore",
    "StoreType",
    "Stored",
    "Upsert",
]

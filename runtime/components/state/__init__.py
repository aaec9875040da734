"""State stores by Dapr type name."""

from .base import Delete, EtagMismatchError, Operation, StateError, StateStore, Stored, StoreType, Upsert
from .memory import MemoryStore
from .sqlite import SqliteStore

STORE_TYPES: dict[str, StoreType] = {"state.in-memory": MemoryStore, "state.sqlite": SqliteStore}

__all__ = [
    "STORE_TYPES",
    "Delete",
    "EtagMismatchError",
    "MemoryStore",
    "Operation",
    "SqliteStore",
    "StateError",
    "StateStore",
    "StoreType",
    "Stored",
    "Upsert",
]

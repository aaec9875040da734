"""Lock stores by Dapr type name."""

from .base import LockError, LockStore, LockStoreType, UnlockStatus
from .redis import RedisLockStore

LOCK_TYPES: dict[str, LockStoreType] = {
    "lock.redis": RedisLockStore,
}

__all__ = ["LOCK_TYPES", "LockError", "LockStore", "LockStoreType", "RedisLockStore", "UnlockStatus"]

"""`lock.redis`: Dapr's standalone Redis lock.

`SET key owner NX PX ms` takes the lock (the expiry in milliseconds, so it is exact to the
millisecond rather than rounded to seconds); releasing it is one Lua script, so checking
the owner and deleting cannot be split by another client's write (a plain GET then DEL
could delete a lock that expired and was taken by someone else in between).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..redis_connection import RedisConnection, RedisReplyError, RedisSettings, RedisUnavailableError, Script
from .base import LockError, UnlockStatus

# 0 released, 1 no such lock, 2 held by another owner.
UNLOCK_SCRIPT = Script("""
local owner = redis.call("GET", KEYS[1])
if owner == false then return 1 end
if owner ~= ARGV[1] then return 2 end
redis.call("DEL", KEYS[1])
return 0
""")


class RedisLockStore:
    def __init__(self, settings: RedisSettings) -> None:
        self.connection = RedisConnection(settings)
        self.address = settings.address
        self.span_attributes: Mapping[str, str | int] = {
            "db.system.name": "redis", "db.namespace": str(settings.db),
            "server.address": settings.host, "server.port": settings.port,
        }  # fmt: skip

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any], home: Path) -> RedisLockStore:
        return cls(RedisSettings.from_metadata(metadata))

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except (RedisUnavailableError, RedisReplyError) as exc:
            raise LockError(f"redis at {self.address}: {exc}") from None

    async def ping(self) -> None:
        with self._reaching():
            await self.connection.execute("PING")

    async def try_lock(self, key: str, owner: str, expiry_seconds: int) -> bool:
        with self._reaching():
            reply = await self.connection.execute("SET", key, owner, "NX", "PX", expiry_seconds * 1000)
        return reply is not None

    async def unlock(self, key: str, owner: str) -> UnlockStatus:
        with self._reaching():
            code = await self.connection.run_script(UNLOCK_SCRIPT, [key], [owner])
        return UnlockStatus(int(code))

    async def close(self) -> None:
        await self.connection.close()

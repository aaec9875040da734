"""`lock.redis` against a real redis-server: SET NX PX, the owner-checked atomic unlock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from outrig.runtime.components.lock import LockError, RedisLockStore, UnlockStatus
from outrig.runtime.components.redis_connection import RedisSettings
from tests.redis_server import RedisServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path / "redis").start()
    yield running
    running.stop()


def store_for(server: RedisServer, **metadata: str) -> RedisLockStore:
    return RedisLockStore(RedisSettings.from_metadata({"redisHost": server.address, **metadata}))


async def test_try_lock_and_owner_checked_unlock(server: RedisServer) -> None:
    store = store_for(server)
    try:
        assert await store.try_lock("r", "alice", 5) is True
        assert 4000 < redis.Redis(port=server.port).pttl("r") <= 5000
        assert await store.try_lock("r", "bob", 5) is False
        assert await store.unlock("r", "bob") is UnlockStatus.LOCK_BELONGS_TO_OTHERS
        assert await store.unlock("r", "alice") is UnlockStatus.SUCCESS
        assert await store.unlock("r", "alice") is UnlockStatus.LOCK_DOES_NOT_EXIST
    finally:
        await store.close()


async def test_of_many_concurrent_takers_exactly_one_wins(server: RedisServer) -> None:
    store = store_for(server)
    try:
        wins = await asyncio.gather(*(store.try_lock("hot", f"owner-{n}", 5) for n in range(50)))
        assert wins.count(True) == 1
        owner = redis.Redis(port=server.port).get("hot")
        assert owner == f"owner-{wins.index(True)}".encode()
    finally:
        await store.close()


async def test_an_unreachable_redis_is_a_lock_error(server: RedisServer) -> None:
    store = store_for(server, dialTimeout="200ms")
    server.stop()
    with pytest.raises(LockError, match=server.address):
        await store.try_lock("r", "a", 5)
    with pytest.raises(LockError):
        await store.unlock("r", "a")
    await store.close()

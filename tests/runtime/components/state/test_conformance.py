"""The state conformance suite: every store runs it (components-contrib's state.go as model)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from outrig.runtime.components.state import (
    Delete,
    EtagMismatchError,
    MemoryStore,
    RedisStore,
    SqliteStore,
    StateStore,
    Upsert,
)
from tests.redis_server import RedisServer

STORES = ["state.in-memory", "state.redis", "state.sqlite"]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    made: StateStore
    if request.param == "state.redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        made = RedisStore.create("conformance", {"redisHost": server.address}, tmp_path)
        await made.connection.execute("FLUSHDB")
    elif request.param == "state.sqlite":
        made = SqliteStore(tmp_path / "s.db")
    else:
        made = MemoryStore()
    yield made
    await made.close()


async def save(store: StateStore, *ops: Upsert | Delete, atomic: bool = False) -> None:
    await store.apply(list(ops), atomic=atomic)


@pytest.mark.parametrize(
    "value",
    [
        b'"a string"',
        b"42",
        b"3.5",
        b"true",
        b"false",
        b'{"nested":{"list":[1,2]}}',
        b"",
        b"\x00\xffraw bytes",
    ],
)
async def test_set_and_get_values_of_every_kind(store: StateStore, value: bytes) -> None:
    await save(store, Upsert("k", value))
    got = await store.get("k")
    assert got is not None and got.value == value and got.etag


async def test_missing_key_is_none_and_delete_removes(store: StateStore) -> None:
    assert await store.get("nothing") is None
    await save(store, Upsert("k", b"1"))
    await save(store, Delete("k"))
    assert await store.get("k") is None
    await save(store, Delete("never-there"))  # deleting a missing key is not an error


async def test_bulk_set_get_delete(store: StateStore) -> None:
    await save(store, *(Upsert(f"k{i}", str(i).encode()) for i in range(10)))
    found = await store.bulk_get([f"k{i}" for i in range(10)] + ["missing"])
    assert [f.value if f else None for f in found] == [str(i).encode() for i in range(10)] + [None]
    await save(store, *(Delete(f"k{i}") for i in range(10)))
    assert await store.bulk_get(["k0", "k9"]) == [None, None]


async def test_every_write_gets_a_new_etag(store: StateStore) -> None:
    await save(store, Upsert("k", b"1"))
    first = await store.get("k")
    await save(store, Upsert("k", b"1"))
    second = await store.get("k")
    assert first and second and first.etag != second.etag


async def test_etag_mismatch_is_rejected_on_save_and_delete(store: StateStore) -> None:
    await save(store, Upsert("k", b"1"))
    current = await store.get("k")
    assert current is not None
    with pytest.raises(EtagMismatchError):
        await save(store, Upsert("k", b"2", etag="not-the-etag"))
    with pytest.raises(EtagMismatchError):
        await save(store, Delete("k", etag="not-the-etag"))
    with pytest.raises(EtagMismatchError):
        await save(store, Upsert("absent", b"2", etag=current.etag))
    assert (await store.get("k")) == current
    await save(store, Upsert("k", b"2", etag=current.etag))
    updated = await store.get("k")
    assert updated is not None and updated.value == b"2"
    await save(store, Delete("k", etag=updated.etag))
    assert await store.get("k") is None


async def test_first_write_without_etag_only_creates(store: StateStore) -> None:
    await save(store, Upsert("k", b"1", concurrency="first-write"))
    with pytest.raises(EtagMismatchError):
        await save(store, Upsert("k", b"2", concurrency="first-write"))
    current = await store.get("k")
    assert current is not None and current.value == b"1"
    await save(store, Upsert("k", b"3", etag=current.etag, concurrency="first-write"))
    assert (await store.get("k")).value == b"3"  # type: ignore[union-attr]


async def test_last_write_ignores_a_stale_etag(store: StateStore) -> None:
    await save(store, Upsert("k", b"1"))
    await save(store, Upsert("k", b"2", etag="stale", concurrency="last-write"))
    assert (await store.get("k")).value == b"2"  # type: ignore[union-attr]


async def test_a_transaction_applies_all_or_nothing(store: StateStore) -> None:
    await save(store, Upsert("a", b"1"), Upsert("b", b"1"))
    await save(store, Upsert("a", b"2"), Delete("b"), Upsert("c", b"3"), atomic=True)
    assert [(f.value if f else None) for f in await store.bulk_get(["a", "b", "c"])] == [b"2", None, b"3"]
    before = await store.bulk_get(["a", "b", "c"])
    with pytest.raises(EtagMismatchError):
        await save(store, Upsert("a", b"9"), Upsert("d", b"9"), Delete("c", etag="wrong"), atomic=True)
    assert await store.bulk_get(["a", "b", "c"]) == before
    assert await store.get("d") is None


async def test_ttl_expires_a_key(store: StateStore) -> None:
    await save(store, Upsert("short", b"1", ttl_seconds=1), Upsert("forever", b"1", ttl_seconds=-1))
    assert await store.get("short") is not None
    await asyncio.sleep(1.2)
    assert await store.get("short") is None
    assert await store.get("forever") is not None


async def test_concurrent_read_modify_write_with_etags_loses_no_update(store: StateStore) -> None:
    await save(store, Upsert("counter", b"0"))

    async def increment(times: int) -> None:
        done = 0
        while done < times:
            current = await store.get("counter")
            assert current is not None
            try:
                await save(store, Upsert("counter", str(int(current.value) + 1).encode(), etag=current.etag))
            except EtagMismatchError:
                continue
            done += 1

    await asyncio.gather(*(increment(10) for _ in range(10)))
    assert (await store.get("counter")).value == b"100"  # type: ignore[union-attr]


async def test_sqlite_is_shared_by_two_processes_worth_of_connections(tmp_path: Path) -> None:
    first, second = SqliteStore(tmp_path / "shared.db"), SqliteStore(tmp_path / "shared.db")
    await first.apply([Upsert("k", b"1")], atomic=False)
    seen = await second.get("k")
    assert seen is not None and seen.value == b"1"
    with pytest.raises(EtagMismatchError):
        await second.apply([Upsert("k", b"2", etag="stale")], atomic=False)
    await first.close()
    await second.close()


async def test_a_write_without_ttl_clears_an_earlier_one(store: StateStore) -> None:
    await save(store, Upsert("k", b"1", ttl_seconds=1))
    await save(store, Upsert("k", b"2"))
    await asyncio.sleep(1.2)
    assert (await store.get("k")).value == b"2"  # type: ignore[union-attr]

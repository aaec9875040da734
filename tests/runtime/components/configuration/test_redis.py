"""`configuration.redis` against a real redis-server: Dapr's value layout, watches, flags."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from outrig.runtime.components.configuration import RESYNC, Change, ConfigurationError, Item
from outrig.runtime.components.configuration.keyspace import KeyspaceListener
from outrig.runtime.components.configuration.redis import RedisConfigurationStore, merged_flags, parse_value
from outrig.runtime.components.redis_connection import RedisSettings
from tests.redis_server import RedisServer
from tests.support import free_port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path / "redis").start()
    yield running
    running.stop()


def store_for(server: RedisServer, **metadata: str) -> RedisConfigurationStore:
    return RedisConfigurationStore(RedisSettings.from_metadata({"redisHost": server.address, **metadata}))


@pytest.mark.parametrize(
    ("raw", "item"),
    [
        (b"101||1", Item("101", "1")),
        (b"plain", Item("plain", "")),
        (b"a||b||3", Item("a||b", "3")),
        (b"||", Item("", "")),
        (b"caf\xc3\xa9||2", Item("café", "2")),
    ],
)
def test_values_are_read_in_dapr_layout(raw: bytes, item: Item) -> None:
    assert parse_value(raw) == item


@pytest.mark.parametrize(
    ("current", "wanted"),
    [("", "K$gxe"), ("KA", None), ("AK", None), ("Ex", "ExK$ge"), ("K$gxe", None), ("Kg", "Kg$xe")],
)
def test_notify_flags_are_merged_not_overwritten(current: str, wanted: str | None) -> None:
    assert merged_flags(current) == wanted


async def test_get_reads_keys_and_all_keys_of_its_database(server: RedisServer) -> None:
    client = redis.Redis(port=server.port, db=2)
    client.mset({"a": "1||v1", "b": "2"})
    client.rpush("a-list", "x")
    redis.Redis(port=server.port, db=0).set("elsewhere", "0||0")
    store = store_for(server, redisDB="2")
    try:
        assert await store.get(["a", "missing"]) == {"a": Item("1", "v1")}
        assert await store.get([]) == {"a": Item("1", "v1"), "b": Item("2", "")}
    finally:
        await store.close()


async def test_watches_report_changes_of_their_keys_once_each(server: RedisServer) -> None:
    store = store_for(server, redisDB="1")
    keyed: list[Change] = []
    everything: list[Change] = []
    try:
        one = await store.watch(["k"], keyed.append)
        await store.watch([], everything.append)
        client = redis.Redis(port=server.port, db=1)
        client.set("k", "1||1")
        client.set("other", "x")
        client.delete("k")
        client.set("k", "2||2", px=50)
        for _ in range(200):
            if len(keyed) >= 5 and len(everything) >= 6:
                break
            await asyncio.sleep(0.02)
        assert [(c.key, c.event) for c in keyed] == [
            ("k", "set"),
            ("k", "del"),
            ("k", "set"),
            ("k", "expire"),
            ("k", "expired"),
        ]
        assert [c.key for c in everything] == ["k", "other", "k", "k", "k", "k"]
        await one.close()
        client.set("k", "3||3")
        client.set("marker", "m")
        for _ in range(200):
            if everything[-1].key == "marker":
                break
            await asyncio.sleep(0.02)
        assert len(keyed) == 5, "a closed watch hears nothing more"
        assert redis.Redis(port=server.port).pubsub_numsub("__keyspace@1__:k") == [(b"__keyspace@1__:k", 0)]
    finally:
        await store.close()


async def test_a_watch_resubscribes_after_a_restart_and_asks_for_a_resync(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_for(server)
    changes: list[Change] = []
    confirmed_at_resync: list[bool] = []

    def record(change: Change) -> None:
        if change.event == RESYNC:  # the re-read must not start before Redis confirmed everything
            confirmed_at_resync.append(store.listener._confirmed.issuperset(store.listener._counts))
        changes.append(change)

    try:
        await store.watch(["k"], record)
        await store.watch(["j"], lambda change: None)
        await store.watch([], lambda change: None)
        await asyncio.to_thread(server.kill)
        await asyncio.to_thread(server.start)
        with caplog.at_level(logging.WARNING, "outrig.configuration"):
            for _ in range(500):
                if any(c.event == RESYNC for c in changes):
                    break
                await asyncio.sleep(0.02)
        assert Change("", RESYNC) in changes
        assert confirmed_at_resync == [True]
        assert "reconnected and resubscribed" in caplog.text
        redis.Redis(port=server.port).set("k", "after||1")
        for _ in range(200):
            if changes[-1] == Change("k", "set"):
                break
            await asyncio.sleep(0.02)
        assert changes[-1] == Change("k", "set")
    finally:
        await store.close()


async def test_watching_an_unreachable_redis_fails_clearly(server: RedisServer) -> None:
    store = store_for(server, dialTimeout="200ms", readTimeout="200ms")
    server.stop()
    with pytest.raises(ConfigurationError, match=server.address):
        await store.watch(["k"], lambda change: None)
    await store.close()


async def test_a_server_refusing_config_gets_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path / "locked", extra_args=["--rename-command", "CONFIG", ""]).start()
    store = store_for(server)
    try:
        with caplog.at_level(logging.WARNING, "outrig.configuration"):
            await store.watch(["a"], lambda change: None)
            await store.watch(["b"], lambda change: None)
        warnings = [r for r in caplog.records if "refuses CONFIG" in r.getMessage()]
        assert len(warnings) == 1
        assert "notify-keyspace-events" in warnings[0].getMessage()
    finally:
        await store.close()
        server.stop()


def unreachable_listener() -> KeyspaceListener:
    """A listener whose Redis never answers (nothing listens on the port): subscriptions wait."""

    async def prepare() -> None:
        return None

    settings = RedisSettings.from_metadata({"redisHost": f"127.0.0.1:{free_port()}", "dialTimeout": "5s"})
    return KeyspaceListener(settings, lambda channel, payload, pattern: None, prepare, lambda: None)


async def test_a_cancelled_subscription_is_taken_back() -> None:
    """A resiliency timeout cancels `add` while it waits: the subscription must not stay counted."""
    listener = unreachable_listener()
    try:
        waiting = asyncio.create_task(listener.add("__keyspace@0__:k", pattern=False))
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert listener._counts == {} and listener._waiters == {}
    finally:
        await listener.close()


async def test_a_second_watch_of_a_channel_waits_for_its_confirmation_too() -> None:
    listener = unreachable_listener()
    try:
        first = asyncio.create_task(listener.add("__keyspace@0__:k", pattern=False))
        second = asyncio.create_task(listener.add("__keyspace@0__:k", pattern=False))
        await asyncio.sleep(0.1)
        assert not second.done(), "the second watch returned before Redis confirmed the channel"
        for task in (first, second):
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert listener._counts == {}
    finally:
        await listener.close()

"""RedisConnection against a real redis-server: pipelining, errors, faults, reconnects."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from outrig.runtime.components.redis_connection import (
    RedisConnection,
    RedisReplyError,
    RedisSettings,
    RedisUnavailableError,
    Script,
)
from outrig.runtime.components.state import MetadataError
from tests.redis_server import RedisServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path / "redis").start()
    yield running
    running.stop()


def settings_for(server: RedisServer, **metadata: str) -> RedisSettings:
    return RedisSettings.from_metadata({"redisHost": server.address, **metadata})


async def test_concurrent_commands_each_get_their_own_reply(server: RedisServer) -> None:
    connection = RedisConnection(settings_for(server))
    await asyncio.gather(*(connection.execute("SET", f"k{i}", f"v{i}") for i in range(500)))
    replies = await asyncio.gather(*(connection.execute("GET", f"k{i}") for i in range(500)))
    assert replies == [f"v{i}".encode() for i in range(500)]
    await connection.close()


async def test_the_commands_of_one_loop_turn_leave_in_one_write(server: RedisServer) -> None:
    connection = RedisConnection(settings_for(server))
    await connection.execute("PING")
    protocol = connection._protocol
    assert protocol is not None and protocol.transport is not None
    transport = protocol.transport
    writes: list[bytes] = []
    write = transport.write

    def counting(data: bytes) -> None:
        writes.append(data)
        write(data)

    protocol.transport = type("Counting", (), {"write": staticmethod(counting)})()  # type: ignore[assignment]
    replies = await asyncio.gather(*(connection.execute("INCR", "turn") for _ in range(50)))
    assert sorted(replies) == list(range(1, 51))
    assert len(writes) == 1 and writes[0].count(b"INCR") == 50
    protocol.transport = transport
    await connection.close()


async def test_an_error_reply_raises_and_the_connection_goes_on(server: RedisServer) -> None:
    connection = RedisConnection(settings_for(server))
    await connection.execute("SET", "s", "x")
    with pytest.raises(RedisReplyError, match="WRONGTYPE"):
        await connection.execute("HGET", "s", "f")
    assert await connection.execute("GET", "s") == b"x"
    await connection.close()


async def test_a_script_is_loaded_once_then_run_by_sha(server: RedisServer) -> None:
    connection = RedisConnection(settings_for(server))
    script = Script("return ARGV[1] .. KEYS[1]")
    assert await connection.run_script(script, ["k"], ["a"]) == b"ak"
    assert await connection.execute("SCRIPT", "EXISTS", script.sha) == [1]
    await connection.execute("SCRIPT", "FLUSH")
    assert await connection.run_script(script, ["k"], ["b"]) == b"bk"
    await connection.close()


async def test_a_killed_server_fails_calls_and_a_restarted_one_serves_again(server: RedisServer) -> None:
    connection = RedisConnection(settings_for(server))
    assert await connection.execute("PING") == b"PONG"
    server.kill()
    with pytest.raises(RedisUnavailableError):
        await connection.execute("PING")
    with pytest.raises(RedisUnavailableError, match="cannot connect"):
        await connection.execute("PING")
    server.start()
    assert await connection.execute("PING") == b"PONG"
    await connection.close()


async def test_an_overdue_reply_aborts_the_connection_and_the_next_call_reconnects(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = silent.getsockname()[1]
    connection = RedisConnection(RedisSettings("127.0.0.1", port, read_timeout=0.2))
    try:
        with pytest.raises(RedisUnavailableError, match=r"no reply within 0\.2s"):
            await asyncio.wait_for(connection.execute("PING"), 5)
    finally:
        await connection.close()
        silent.close()


async def test_callers_queued_behind_a_failed_connect_fail_with_it() -> None:
    """A server that never completes the handshake (a full backlog): one attempt waits out
    dialTimeout, and the 19 callers queued behind it fail with its error, not in turn."""
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = []
    for _ in range(8):  # fill the accept queue; later SYNs are dropped
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    connection = RedisConnection(RedisSettings("127.0.0.1", port, dial_timeout=1.0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        results = await asyncio.gather(
            *(connection.execute("PING") for _ in range(20)), return_exceptions=True
        )
    finally:
        await connection.close()
        for sock in (blackhole, *fillers):
            sock.close()
    assert all(isinstance(r, RedisUnavailableError) and "timed out" in str(r) for r in results), results
    assert loop.time() - started < 5, "queued callers waited out a dial timeout each"


async def test_password_and_database_are_sent_on_connect(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", extra_args=["--requirepass", "s3cret"]).start()
    try:
        good = RedisConnection(settings_for(server, redisPassword="s3cret", redisDB="3"))
        await good.execute("SET", "k", "in db 3")
        assert await good.execute("CLIENT", "INFO") and b"db=3" in await good.execute("CLIENT", "INFO")
        await good.close()
        bad = RedisConnection(settings_for(server, redisPassword="wrong"))
        with pytest.raises(RedisReplyError, match="AUTH failed"):
            await bad.execute("PING")
        await bad.close()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("metadata", "field", "message"),
    [
        ({}, "redisHost", "redisHost is required"),
        ({"redisHost": "h:port"}, "redisHost", "redisHost must be host:port"),
        ({"redisHost": "h:1", "redisDB": "one"}, "redisDB", "redisDB must be a whole number"),
        ({"redisHost": "h:1", "enableTLS": "yes"}, "enableTLS", "enableTLS must be true or false"),
        ({"redisHost": "h:1", "readTimeout": "3"}, "readTimeout", "readTimeout must be a duration"),
    ],
)
def test_bad_metadata_names_the_field(metadata: dict[str, str], field: str, message: str) -> None:
    with pytest.raises(MetadataError) as caught:
        RedisSettings.from_metadata(metadata)
    assert (caught.value.name, caught.value.message) == (field, message)


def test_metadata_is_read_as_dapr_writes_it() -> None:
    settings = RedisSettings.from_metadata(
        {"redisHost": "cache:6380", "redisDB": "2", "enableTLS": "true", "dialTimeout": "1m30s",
         "readTimeout": "500ms", "redisUsername": "u", "redisPassword": "p"}
    )  # fmt: skip
    assert settings == RedisSettings("cache", 6380, 2, "u", "p", True, 90.0, 0.5)

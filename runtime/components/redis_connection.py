"""One multiplexed connection to Redis: every concurrent command pipelined on one socket.

Why not redis-py on the hot path: measured here (benchmarks/state.py, 16 concurrent
callers), redis-py 8's asyncio client spends 70-90 us of CPU per command (pool checkout,
stream reader, per-read timers, its observability hooks); writing commands onto one
connection and parsing replies with hiredis, in order, costs about 10 us. Redis answers
in order, so a FIFO of futures is all the bookkeeping needed. The commands sent in one
event-loop turn leave in one write (benchmarks/ratelimit.py, 16 concurrent callers: -40%
CPU per command). redis-py stays for tests and tools.

Failures: a lost connection fails every command in flight with `RedisUnavailableError`
and the next command reconnects; a reply overdue by `read_timeout` aborts the connection
the same way (its later replies could no longer be matched). Nothing is retried here: a
write whose reply was lost may have been applied, so retrying is the resiliency
middleware's decision.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis

from .metadata import MetadataError, duration_seconds, flag, text, whole_number

Arg = str | bytes | int


class RedisUnavailableError(ConnectionError):
    """Redis cannot be reached, or the connection broke before the reply arrived."""


class RedisReplyError(Exception):
    """Redis answered with an error (WRONGTYPE, NOSCRIPT, NOAUTH, ...)."""


@dataclass(frozen=True)
class RedisSettings:
    """Dapr's Redis component metadata, shared by `state.redis` and `pubsub.redis`."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    dial_timeout: float = 5.0
    read_timeout: float = 3.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> RedisSettings:
        host, port = host_port(
            text(metadata, "redisHost", required_hint="set it to host:port, e.g. localhost:6379")
        )
        return cls(
            host=host,
            port=port,
            db=whole_number(metadata, "redisDB", 0),
            username=text(metadata, "redisUsername") or None,
            password=text(metadata, "redisPassword") or None,
            tls=flag(metadata, "enableTLS"),
            dial_timeout=duration_seconds(metadata, "dialTimeout", 5.0),
            read_timeout=duration_seconds(metadata, "readTimeout", 3.0),
        )


@dataclass(frozen=True)
class Script:
    """A Lua script, sent by SHA once Redis has it (EVALSHA, then EVAL on NOSCRIPT)."""

    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()


class _Pending:
    __slots__ = ("deadline", "future")

    def __init__(self, future: asyncio.Future[Any], deadline: float) -> None:
        self.future, self.deadline = future, deadline


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[_Pending] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._outgoing: list[bytes] = []
        """Commands packed this event-loop turn, written together at its end: one send
        syscall for all the callers of a turn instead of one each."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                pending = self.waiting.popleft()
                if not pending.future.done():
                    pending.future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            self.abort(RedisUnavailableError(f"unreadable reply from redis: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail_all(RedisUnavailableError(f"connection lost{f': {exc}' if exc else ''}"))

    def abort(self, error: Exception) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()
        self._fail_all(error)

    def _fail_all(self, error: Exception) -> None:
        while self.waiting:
            future = self.waiting.popleft().future
            if not future.done():
                future.set_exception(error)

    def send(self, args: Sequence[Arg], timeout: float) -> asyncio.Future[Any]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(hiredis.pack_command(cast(Any, tuple(args))))  # its stub says 1-tuples
        self.waiting.append(_Pending(future, time.monotonic() + timeout))
        return future

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self.lost or self.transport is None:
            return  # their futures failed with the connection
        self.transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))


class RedisConnection:
    """Commands to one Redis server over one lazily (re)opened, pipelined connection."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()
        self._failure: tuple[float, RedisUnavailableError] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def execute(self, *args: Arg) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        reply = await protocol.send(args, self.settings.read_timeout)
        if isinstance(reply, hiredis.ReplyError):
            raise RedisReplyError(str(reply))
        return reply

    async def run_script(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self.execute("EVAL", script.source, len(keys), *keys, *args)

    async def _connect(self) -> _Protocol:
        arrived = time.monotonic()
        async with self._connecting:
            if self._protocol is not None and not self._protocol.lost:
                return self._protocol
            if self._failure is not None and self._failure[0] >= arrived:
                raise self._failure[1]  # an attempt failed while we queued: don't wait again
            s = self.settings
            loop = asyncio.get_running_loop()
            context = ssl.create_default_context() if s.tls else None
            try:
                async with asyncio.timeout(s.dial_timeout):
                    _, protocol = await loop.create_connection(
                        _Protocol, s.host, s.port, ssl=context, server_hostname=s.host if s.tls else None
                    )
                    if s.password:
                        auth: list[Arg] = (
                            ["AUTH", s.username, s.password] if s.username else ["AUTH", s.password]
                        )
                        await self._handshake(protocol, auth)
                    if s.db:
                        await self._handshake(protocol, ["SELECT", s.db])
            except (OSError, TimeoutError) as exc:
                error = RedisUnavailableError(f"cannot connect: {str(exc) or 'timed out'}")
                self._failure = (time.monotonic(), error)
                raise error from None
            self._protocol = protocol
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = asyncio.create_task(self._watch_overdue())
            return protocol

    async def _handshake(self, protocol: _Protocol, command: Sequence[Arg]) -> None:
        reply = await protocol.send(command, self.settings.dial_timeout)
        if isinstance(reply, hiredis.ReplyError):
            protocol.abort(RedisUnavailableError(str(reply)))
            raise RedisReplyError(f"{command[0]!s} failed: {reply}")

    async def _watch_overdue(self) -> None:
        """Abort a connection whose oldest reply is overdue: one timer per connection,
        not one per command."""
        period = min(0.1, self.settings.read_timeout / 4)
        while True:
            await asyncio.sleep(period)
            protocol = self._protocol
            if protocol is None or protocol.lost:
                return
            if protocol.waiting and protocol.waiting[0].deadline < time.monotonic():
                protocol.abort(RedisUnavailableError(f"no reply within {self.settings.read_timeout:g}s"))
                return

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
            self._protocol.lost = True


def host_port(address: str) -> tuple[str, int]:
    """`host:port` as two parts (port 6379 when left out); a MetadataError names `redisHost`."""
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, 6379
    if not port.isdigit():
        raise MetadataError("redisHost", address, "redisHost must be host:port", "e.g. localhost:6379")
    return host.strip("[]"), int(port)

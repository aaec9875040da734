"""A dedicated Redis connection in subscribe mode, for keyspace notifications.

`RedisConnection` pipelines request/reply commands, matching replies to commands in
order; a connection in subscribe mode receives pushes instead, so it gets a connection of
its own. One listener serves every watch of a store: channels (`SUBSCRIBE`) and patterns
(`PSUBSCRIBE`) are counted, sent once, and dropped when their last watch ends.

A lost connection is not the end of the watches: the listener reconnects (backing off up
to `MAX_BACKOFF`), runs `prepare` again (a restarted Redis has forgotten its runtime
`notify-keyspace-events`), resubscribes everything, says so in the log, and calls
`on_resubscribed` so the runtime can re-read what may have changed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, cast

import hiredis

from ..redis_connection import Arg, RedisSettings

log = logging.getLogger("outrig.configuration")

MIN_BACKOFF = 0.1
MAX_BACKOFF = 2.0
READ_SIZE = 65536

Subscription = tuple[bool, bytes]
"""(is a pattern, channel or pattern name)."""


class ListenerError(ConnectionError):
    """The listener could not subscribe (Redis unreachable, or it refused)."""


class KeyspaceListener:
    def __init__(
        self,
        settings: RedisSettings,
        on_message: Callable[[bytes, bytes, bool], None],
        prepare: Callable[[], Awaitable[None]],
        on_resubscribed: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.on_message = on_message
        """Told (channel, payload, through a pattern) of each notification: a connection
        subscribed to a channel and to a pattern matching it gets the message twice."""
        self.prepare = prepare
        self.on_resubscribed = on_resubscribed
        self._counts: dict[Subscription, int] = {}
        self._waiters: dict[Subscription, list[asyncio.Future[None]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._live = False
        """Everything registered has been sent on the current connection."""
        self._confirmed: set[Subscription] = set()
        """Confirmed by Redis on the current connection."""
        self._resync_pending = False
        """Reconnected: call `on_resubscribed` once every subscription is confirmed."""
        self._task: asyncio.Task[None] | None = None
        self._last_error = "not connected yet"

    async def add(self, name: str, *, pattern: bool) -> None:
        """Subscribe to a channel (or pattern); returns once Redis confirmed it (a second
        watch of the same channel waits for the first one's confirmation too). A failure
        or a cancel takes the subscription back."""
        sub = (pattern, name.encode())
        self._counts[sub] = self._counts.get(sub, 0) + 1
        if sub in self._confirmed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(sub, []).append(waiter)
        if self._counts[sub] == 1 and self._live and self._writer is not None:
            self._send([_command(sub, subscribe=True)])
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        timeout = self.settings.dial_timeout + self.settings.read_timeout
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            await self.remove(name, pattern=pattern)
            raise ListenerError(
                f"redis at {self.settings.address} did not confirm the subscription within {timeout:g}s"
                f" ({self._last_error})"
            ) from None
        except BaseException:
            await self.remove(name, pattern=pattern)
            raise

    async def remove(self, name: str, *, pattern: bool) -> None:
        sub = (pattern, name.encode())
        count = self._counts.get(sub, 0) - 1
        if count > 0:
            self._counts[sub] = count
            return
        self._counts.pop(sub, None)
        self._confirmed.discard(sub)
        for waiter in self._waiters.pop(sub, []):
            waiter.cancel()
        if self._live and self._writer is not None:
            self._send([_command(sub, subscribe=False)])
        self._check_resubscribed()

    def _send(self, commands: list[tuple[Arg, ...]]) -> None:
        assert self._writer is not None
        for command in commands:
            self._writer.write(hiredis.pack_command(cast(Any, command)))

    async def _run(self) -> None:
        backoff = MIN_BACKOFF
        connected_before = False
        while self._counts:
            try:
                reader, writer = await self._connect()
            except (OSError, TimeoutError, ListenerError) as exc:
                self._last_error = f"cannot connect: {str(exc) or type(exc).__name__}"
                log.debug("keyspace listener for redis at %s: %s", self.settings.address, self._last_error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = MIN_BACKOFF
            try:
                await self.prepare()
            except Exception as exc:  # a store that refuses CONFIG: the store has logged why
                log.debug("keyspace listener: prepare failed: %s", exc)
            # No await from the snapshot to `_live`: a subscription added meanwhile is either
            # in the snapshot or sent by `add` itself.
            self._writer = writer
            self._send([_command(sub, subscribe=True) for sub in self._counts])
            self._live = True
            # The re-read waits for every confirmation: a change made before Redis confirmed
            # could otherwise be missed by both the re-read and the notifications.
            self._resync_pending = connected_before
            connected_before = True
            try:
                await self._read(reader)
                self._last_error = "connection closed by redis"
            except (OSError, hiredis.ProtocolError) as exc:
                self._last_error = f"connection lost: {exc}"
            finally:
                self._live = False
                self._writer = None
                self._confirmed.clear()
                self._resync_pending = False
                writer.close()
            if self._counts:
                log.warning(
                    "keyspace notifications from redis at %s: %s; watches stay, reconnecting",
                    self.settings.address, self._last_error,
                )  # fmt: skip

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        s = self.settings
        context = ssl.create_default_context() if s.tls else None
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(s.dial_timeout):
                reader, writer = await asyncio.open_connection(
                    s.host, s.port, ssl=context, server_hostname=s.host if s.tls else None
                )
                if s.password:
                    await _authenticate(reader, writer, s.username, s.password)
        except BaseException:  # a timeout, a refusal, a cancel: the connection is not kept
            if writer is not None:
                writer.close()
            raise
        return reader, writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader()
        while True:
            chunk = await reader.read(READ_SIZE)
            if not chunk:
                return
            parser.feed(chunk)
            while (reply := parser.gets()) is not False:
                self._handle(reply)

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list) or not reply:
            return
        kind = reply[0]
        if kind == b"message" and len(reply) == 3:
            self.on_message(reply[1], reply[2], False)
        elif kind == b"pmessage" and len(reply) == 4:
            self.on_message(reply[2], reply[3], True)
        elif kind in (b"subscribe", b"psubscribe") and len(reply) >= 2:
            sub = (kind == b"psubscribe", reply[1])
            if sub in self._counts:
                self._confirmed.add(sub)
            for waiter in self._waiters.pop(sub, []):
                if not waiter.done():
                    waiter.set_result(None)
            self._check_resubscribed()

    def _check_resubscribed(self) -> None:
        if not self._resync_pending or not self._confirmed.issuperset(self._counts):
            return
        self._resync_pending = False
        channels = sum(1 for pattern, _ in self._counts if not pattern)
        log.warning(
            "keyspace notifications from redis at %s: reconnected and resubscribed "
            "(%d channels, %d patterns); re-reading watched keys for changes missed meanwhile",
            self.settings.address, channels, len(self._counts) - channels,
        )  # fmt: skip
        self.on_resubscribed()

    async def close(self) -> None:
        self._counts.clear()
        self._confirmed.clear()
        self._resync_pending = False
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.cancel()
        self._waiters.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._live = False


async def _authenticate(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, username: str | None, password: str
) -> None:
    auth: tuple[Arg, ...] = ("AUTH", username, password) if username else ("AUTH", password)
    writer.write(hiredis.pack_command(cast(Any, auth)))
    parser = hiredis.Reader()
    reply: Any = False
    while reply is False:
        chunk = await reader.read(READ_SIZE)
        if not chunk:
            raise ListenerError("connection closed during AUTH")
        parser.feed(chunk)
        reply = parser.gets()
    if isinstance(reply, hiredis.ReplyError):
        raise ListenerError(f"AUTH failed: {reply}")


def _command(sub: Subscription, *, subscribe: bool) -> tuple[Arg, ...]:
    pattern, name = sub
    verb = (
        ("PSUBSCRIBE" if subscribe else "PUNSUBSCRIBE")
        if pattern
        else ("SUBSCRIBE" if subscribe else "UNSUBSCRIBE")
    )
    return (verb, name)

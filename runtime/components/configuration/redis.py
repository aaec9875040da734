"""`configuration.redis`: configuration items in Redis, in Dapr's layout.

Each item is a Redis string `value||version` (`SET orderId1 "101||1"`); a string without
`||` is a value with no version. Where Dapr's component is weak we do better:

- all keys are listed with `SCAN`, not `KEYS *` (which blocks the server), and read with
  one `MGET` (keys of other types read as missing instead of failing the request);
- the version is what follows the *last* `||`, so a value may itself contain `||`
  (Dapr splits on every `||` and drops what follows the second);
- `notify-keyspace-events` is *merged* with what the server has (Dapr overwrites it with
  `KA`, dropping flags other tools rely on) and set again after a reconnect (a restarted
  Redis forgets it); a server that refuses `CONFIG SET` (managed Redis) gets one clear
  warning naming the setting to apply by hand;
- all watches share one subscriber connection (Dapr opens one per key and per
  subscription), which reconnects and resubscribes after a Redis restart;
- the database number is part of the keyspace channel, so `redisDB` works (Dapr listens on
  db 0 only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..redis_connection import RedisConnection, RedisReplyError, RedisSettings, RedisUnavailableError
from .base import RESYNC, Change, ChangeHandler, ConfigurationError, Item
from .keyspace import KeyspaceListener, ListenerError

log = logging.getLogger("outrig.configuration")

SEPARATOR = "||"
NOTIFY_SETTING = "notify-keyspace-events"
NEEDED_FLAGS = "K$gxe"
"""Keyspace channel (K) for string writes ($), DEL/EXPIRE/RENAME (g), expiry (x) and
eviction (e); `A` on the server covers every event class."""
EVENT_CLASSES = "$gxe"
SCAN_COUNT = 500


def parse_value(raw: bytes) -> Item:
    """`value||version` -> Item; the version follows the last separator."""
    text = raw.decode("utf-8", "replace")
    value, sep, version = text.rpartition(SEPARATOR)
    return Item(value, version) if sep else Item(text, "")


def merged_flags(current: str) -> str | None:
    """The `notify-keyspace-events` value that keeps `current` and adds what watches
    need, or None when `current` already has it."""
    missing = "" if "K" in current else "K"
    if "A" not in current:
        missing += "".join(flag for flag in EVENT_CLASSES if flag not in current)
    return current + missing if missing else None


class _Watch:
    def __init__(self, store: RedisConfigurationStore, keys: Sequence[str], handler: ChangeHandler) -> None:
        self.store, self.keys, self.handler = store, frozenset(keys), handler

    async def close(self) -> None:
        await self.store._unwatch(self)


class RedisConfigurationStore:
    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.connection = RedisConnection(settings)
        self.address = settings.address
        self.channel_prefix = f"__keyspace@{settings.db}__:"
        self.span_attributes: Mapping[str, str | int] = {
            "db.system.name": "redis", "db.namespace": str(settings.db),
            "server.address": settings.host, "server.port": settings.port,
        }  # fmt: skip
        self.listener = KeyspaceListener(settings, self._notified, self._enable_notifications, self._resync)
        self.watches: list[_Watch] = []
        self._warned_config = False

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any], home: Path) -> RedisConfigurationStore:
        return cls(RedisSettings.from_metadata(metadata))

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except (RedisUnavailableError, RedisReplyError, ListenerError) as exc:
            raise ConfigurationError(f"redis at {self.address}: {exc}") from None

    async def ping(self) -> None:
        with self._reaching():
            await self.connection.execute("PING")

    async def get(self, keys: Sequence[str]) -> dict[str, Item]:
        with self._reaching():
            names = list(keys) or await self._all_keys()
            if not names:
                return {}
            values = await self.connection.execute("MGET", *names)
        return {key: parse_value(raw) for key, raw in zip(names, values, strict=True) if raw}

    async def _all_keys(self) -> list[str]:
        found: dict[str, None] = {}  # SCAN may return a key twice
        cursor = b"0"
        while True:
            cursor, batch = await self.connection.execute("SCAN", cursor, "COUNT", SCAN_COUNT)
            found.update(dict.fromkeys(k.decode("utf-8", "replace") for k in batch))
            if cursor == b"0":
                return sorted(found)

    async def watch(self, keys: Sequence[str], handler: ChangeHandler) -> _Watch:
        watch = _Watch(self, keys, handler)
        with self._reaching():
            await self._enable_notifications()
            added: list[tuple[str, bool]] = []
            try:
                for name, pattern in self._subscriptions(watch):
                    await self.listener.add(name, pattern=pattern)
                    added.append((name, pattern))
            except BaseException:  # a failure, or a cancel (a resiliency timeout): undo what was added
                for name, pattern in added:
                    await self.listener.remove(name, pattern=pattern)
                raise
        self.watches.append(watch)
        return watch

    def _subscriptions(self, watch: _Watch) -> list[tuple[str, bool]]:
        if not watch.keys:
            return [(self.channel_prefix + "*", True)]
        return [(self.channel_prefix + key, False) for key in sorted(watch.keys)]

    async def _unwatch(self, watch: _Watch) -> None:
        if watch not in self.watches:
            return
        self.watches.remove(watch)
        for name, pattern in self._subscriptions(watch):
            await self.listener.remove(name, pattern=pattern)

    def _notified(self, channel: bytes, payload: bytes, pattern: bool) -> None:
        name = channel.decode("utf-8", "replace")
        if not name.startswith(self.channel_prefix):
            return
        change = Change(name[len(self.channel_prefix) :], payload.decode("utf-8", "replace"))
        for watch in list(self.watches):
            if (not watch.keys) if pattern else (change.key in watch.keys):
                watch.handler(change)

    def _resync(self) -> None:
        for watch in list(self.watches):
            watch.handler(Change("", RESYNC))

    async def _enable_notifications(self) -> None:
        """Make sure the server publishes the keyspace events watches need, keeping the
        flags it has; warn once (and carry on) if it does not let us."""
        try:
            reply = await self.connection.execute("CONFIG", "GET", NOTIFY_SETTING)
            current = reply[1].decode() if isinstance(reply, list) and len(reply) == 2 else ""
            wanted = merged_flags(current)
            if wanted is not None:
                await self.connection.execute("CONFIG", "SET", NOTIFY_SETTING, wanted)
                log.info("redis at %s: %s set to %r (was %r) for configuration watches",
                         self.address, NOTIFY_SETTING, wanted, current)  # fmt: skip
        except RedisReplyError as exc:
            if not self._warned_config:
                self._warned_config = True
                log.warning(
                    "redis at %s refuses CONFIG (%s): set %s to include %s (or KA) on the server, "
                    "or configuration subscriptions receive no updates",
                    self.address, exc, NOTIFY_SETTING, NEEDED_FLAGS,
                )  # fmt: skip

    async def close(self) -> None:
        self.watches.clear()
        await self.listener.close()
        await self.connection.close()

"""`pubsub.redis`: Redis Streams with consumer groups, in Dapr's layout.

A topic is a stream; a message is an entry `{data, metadata}` (`XADD`); a consumer group
is the `consumerID` (the app id by default), created at the stream's start (`0`, as Dapr
does), so messages published before the first subscriber started reach it.

At-least-once, through subscriber crashes and Redis restarts:
- an entry is acknowledged (`XACK`) only after the handler returned True;
- an entry stays in the group's pending list until then; one idle for longer than
  `processingTimeout` (its consumer died, or the app asked for a retry) is claimed by a
  live consumer (`XAUTOCLAIM`, every `redeliverInterval`) and delivered again;
- entries still in a handler have their idle time reset (`XCLAIM ... JUSTID`) every third
  of `processingTimeout`, so a slow handler never makes a live message look abandoned
  (Dapr does not do this: a handler slower than the timeout gets its message twice);
- each sidecar is its own consumer (`{consumerID}-{random}`), so its replicas compete for
  messages; consumers left empty by dead sidecars are removed.

Reads block (`XREADGROUP ... BLOCK`), so each subscription reads on a connection of its
own; publishes, acknowledgements and claims share one pipelined connection.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from ..metadata import whole_number
from ..redis_connection import RedisConnection, RedisReplyError, RedisSettings, RedisUnavailableError
from .base import Consumer, Handler, Message, PubSubError
from .consumer import ConsumerLoop, ConsumerSettings

log = logging.getLogger("outrig.pubsub.redis")

BLOCK_SECONDS = 1.0
"""How long one read waits for new entries before the loop looks for idle ones again."""
EMPTY_CONSUMER_IDLE = 3600.0
"""A consumer with nothing pending and idle this long (a dead sidecar's) is removed."""


class RedisPubSub:
    features = frozenset({"BULK_PUBLISH", "MESSAGE_TTL"})

    def __init__(self, name: str, settings: RedisSettings, consumer: ConsumerSettings, max_len: int) -> None:
        self.name = name
        self.settings = settings
        self.consumer_settings = consumer
        self.consumer_group = consumer.group
        self.max_len = max_len
        self.consumer_name = f"{consumer.group}-{secrets.token_hex(4)}"
        self.connection = RedisConnection(settings)
        self.span_attributes: Mapping[str, str | int] = {
            "messaging.system": "redis",
            "server.address": settings.host,
            "server.port": settings.port,
        }
        self._consumers: list[tuple[ConsumerLoop, RedisConnection]] = []

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any], home: Path, app_id: str) -> RedisPubSub:
        return cls(
            name,
            RedisSettings.from_metadata(metadata),
            ConsumerSettings.from_metadata(metadata, app_id),
            whole_number(metadata, "maxLenApprox", 0),
        )

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> str:
        trim: list[str | int] = ["MAXLEN", "~", self.max_len] if self.max_len > 0 else []
        fields: list[str | bytes] = ["data", data]
        if metadata:
            fields += ["metadata", json.dumps(dict(metadata))]
        try:
            entry_id = await self.connection.execute("XADD", topic, *trim, "*", *fields)
        except (RedisUnavailableError, RedisReplyError) as exc:
            raise PubSubError(f"redis at {self.settings.address}: {exc}") from exc
        return str(entry_id.decode())

    async def subscribe(self, topic: str, handler: Handler, *, at_least: int = 1) -> Consumer:
        s = self.consumer_settings
        # Its own connection: a blocked read must not hold up other commands.
        reader = RedisConnection(
            dataclasses.replace(self.settings, read_timeout=self.settings.read_timeout + BLOCK_SECONDS)
        )
        source = _StreamSource(self, topic, reader)
        loop = ConsumerLoop(
            source, handler, name=f"{self.name}/{topic}", concurrency=max(at_least, s.concurrency),
            processing_timeout=s.processing_timeout,
        )  # fmt: skip
        self._consumers.append((loop, reader))
        return loop

    async def backlog(self, topic: str) -> int:
        """The group's `lag` (entries not yet read) plus its `pending` (read, not acknowledged)."""
        try:
            groups = await self.connection.execute("XINFO", "GROUPS", topic)
        except RedisReplyError:
            return 0  # no such stream yet
        except RedisUnavailableError as exc:
            raise PubSubError(f"redis at {self.settings.address}: {exc}") from exc
        for info in groups:
            fields = dict(zip(info[::2], info[1::2], strict=True))
            if fields.get(b"name", b"").decode() == self.consumer_group:
                return int(fields.get(b"lag") or 0) + int(fields.get(b"pending") or 0)
        return 0

    async def ping(self) -> None:
        try:
            await self.connection.execute("PING")
        except (RedisUnavailableError, RedisReplyError) as exc:
            raise PubSubError(f"redis at {self.settings.address}: {exc}") from exc

    async def close(self) -> None:
        for loop, reader in self._consumers:
            await loop.close()
            await reader.close()
        self._consumers.clear()
        await self.connection.close()


class _StreamSource:
    """One topic's stream, read by this sidecar's consumer in its group."""

    def __init__(self, pubsub: RedisPubSub, topic: str, reader: RedisConnection) -> None:
        self.pubsub = pubsub
        self.topic = topic
        self.reader = reader
        self.group = pubsub.consumer_settings.group
        self.consumer = pubsub.consumer_name
        self._group_ready = False
        self._claim_cursor = "0-0"
        self._next_claim = 0.0
        self._next_cleanup = time.monotonic() + EMPTY_CONSUMER_IDLE / 4

    async def fetch(self, limit: int, exclude: AbstractSet[str]) -> Sequence[Message]:
        command = self.pubsub.connection.execute
        if not self._group_ready:
            try:
                await command("XGROUP", "CREATE", self.topic, self.group, "0", "MKSTREAM")
            except RedisReplyError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise
            self._group_ready = True
        now = time.monotonic()
        if now >= self._next_claim:
            claimed = await self._claim_idle(limit, exclude)
            if claimed:
                return claimed
        if now >= self._next_cleanup:
            self._next_cleanup = now + EMPTY_CONSUMER_IDLE / 4
            await self._remove_dead_consumers()
        try:
            reply = await self.reader.execute(
                "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", limit,
                "BLOCK", int(BLOCK_SECONDS * 1000), "STREAMS", self.topic, ">",
            )  # fmt: skip
        except RedisReplyError as exc:
            if str(exc).startswith("NOGROUP"):  # the stream was deleted, or Redis lost it
                self._group_ready = False
            raise
        if not reply:
            return []
        return [m for entry in reply[0][1] if (m := self._message(entry)) is not None]

    async def _claim_idle(self, limit: int, exclude: AbstractSet[str]) -> list[Message]:
        """One step of a scan of the group's pending list for entries idle too long."""
        settings = self.pubsub.consumer_settings
        reply = await self.pubsub.connection.execute(
            "XAUTOCLAIM", self.topic, self.group, self.consumer,
            int(settings.processing_timeout * 1000), self._claim_cursor, "COUNT", max(limit, 10),
        )  # fmt: skip
        cursor = reply[0].decode()
        if cursor == "0-0":
            self._claim_cursor = "0-0"
            self._next_claim = time.monotonic() + settings.redeliver_interval
        else:
            self._claim_cursor = cursor
        messages = [m for entry in reply[1] if (m := self._message(entry, redelivered=True)) is not None]
        for deleted in reply[2] if len(reply) > 2 else []:
            log.warning("%s/%s: pending entry %s was trimmed from the stream before delivery",
                        self.pubsub.name, self.topic, deleted.decode())  # fmt: skip
        return [m for m in messages if m.id not in exclude]

    def _message(self, entry: Any, redelivered: bool = False) -> Message | None:
        entry_id, fields = entry[0].decode(), entry[1]
        if not fields:
            return None
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        metadata: dict[str, str] = {}
        raw = values.get(b"metadata")
        if raw:
            try:
                metadata = {str(k): str(v) for k, v in json.loads(raw).items()}
            except (ValueError, AttributeError):
                log.warning("%s/%s: entry %s has unreadable metadata; ignored",
                            self.pubsub.name, self.topic, entry_id)  # fmt: skip
        return Message(self.topic, values.get(b"data", b""), metadata, entry_id, redelivered)

    async def ack(self, message: Message) -> None:
        await self.pubsub.connection.execute("XACK", self.topic, self.group, message.id)

    async def keep(self, messages: Sequence[Message]) -> None:
        ids = [m.id for m in messages]
        await self.pubsub.connection.execute(
            "XCLAIM", self.topic, self.group, self.consumer, 0, *ids, "JUSTID"
        )

    async def _remove_dead_consumers(self) -> None:
        reply = await self.pubsub.connection.execute("XINFO", "CONSUMERS", self.topic, self.group)
        for info in reply:
            fields = dict(zip(info[::2], info[1::2], strict=True))
            name = fields[b"name"].decode()
            idle_seconds = fields[b"idle"] / 1000
            if name != self.consumer and fields[b"pending"] == 0 and idle_seconds > EMPTY_CONSUMER_IDLE:
                await self.pubsub.connection.execute("XGROUP", "DELCONSUMER", self.topic, self.group, name)

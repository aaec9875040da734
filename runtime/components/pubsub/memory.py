"""`pubsub.in-memory`: a broker inside one sidecar process, for tests and throwaway runs.

As Dapr's: nothing survives the process, and a message published while no consumer group
exists for its topic reaches nobody. Otherwise it keeps the whole contract of `base.py`
(groups, acknowledgement, redelivery after `processingTimeout`); components of the same
name in one process share their topics, as if they were clients of one broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import Consumer, Handler, Message
from .consumer import ConsumerLoop, ConsumerSettings

IDLE_WAIT = 1.0

Topics = dict[str, dict[str, "_GroupQueue"]]
_BROKERS: dict[str, Topics] = {}
"""The topics of each in-memory broker of this process, by component name."""


@dataclass
class _GroupQueue:
    ready: deque[Message] = field(default_factory=deque)
    pending: dict[str, tuple[Message, float]] = field(default_factory=dict)
    """Messages handed out and not yet acknowledged, with when they were last claimed."""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class _QueueSource:
    def __init__(self, queue: _GroupQueue, processing_timeout: float) -> None:
        self.queue = queue
        self.processing_timeout = processing_timeout

    async def fetch(self, limit: int, exclude: AbstractSet[str]) -> Sequence[Message]:
        out = self._take(limit, exclude)
        if out:
            return out
        # Wait for a publish, or until the oldest unacknowledged message falls idle.
        claims = [claimed for _, claimed in self.queue.pending.values()]
        due = min(claims, default=math.inf) + self.processing_timeout - time.monotonic()
        self.queue.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.arrived.wait(), max(0.01, min(IDLE_WAIT, due)))
        return self._take(limit, exclude)

    def _take(self, limit: int, exclude: AbstractSet[str]) -> list[Message]:
        now = time.monotonic()
        queue = self.queue
        out = [
            dataclasses.replace(message, redelivered=True)
            for message, claimed in queue.pending.values()
            if now - claimed >= self.processing_timeout and message.id not in exclude
        ][:limit]
        while queue.ready and len(out) < limit:
            out.append(queue.ready.popleft())
        for message in out:
            queue.pending[message.id] = (message, now)
        return out

    async def ack(self, message: Message) -> None:
        self.queue.pending.pop(message.id, None)

    async def keep(self, messages: Sequence[Message]) -> None:
        now = time.monotonic()
        for message in messages:
            if message.id in self.queue.pending:
                self.queue.pending[message.id] = (message, now)


class MemoryPubSub:
    features = frozenset({"BULK_PUBLISH", "MESSAGE_TTL"})

    def __init__(self, name: str, settings: ConsumerSettings) -> None:
        self.name = name
        self.settings = settings
        self.consumer_group = settings.group
        self.span_attributes: Mapping[str, str | int] = {"messaging.system": "memory"}
        self._topics = _BROKERS.setdefault(name, {})
        self._ids = itertools.count(1)
        self._consumers: list[ConsumerLoop] = []

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any], home: Path, app_id: str) -> MemoryPubSub:
        return cls(name, ConsumerSettings.from_metadata(metadata, app_id, processing_timeout=5.0))

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> str:
        message = Message(topic, data, dict(metadata), str(next(self._ids)))
        for queue in self._topics.get(topic, {}).values():
            queue.ready.append(message)
            queue.arrived.set()
        return message.id

    async def subscribe(self, topic: str, handler: Handler, *, at_least: int = 1) -> Consumer:
        queue = self._topics.setdefault(topic, {}).setdefault(self.settings.group, _GroupQueue())
        loop = ConsumerLoop(
            _QueueSource(queue, self.settings.processing_timeout),
            handler,
            name=f"{self.name}/{topic}",
            concurrency=max(at_least, self.settings.concurrency),
            processing_timeout=self.settings.processing_timeout,
        )
        self._consumers.append(loop)
        return loop

    async def backlog(self, topic: str) -> int:
        queue = self._topics.get(topic, {}).get(self.settings.group)
        return 0 if queue is None else len(queue.ready) + len(queue.pending)

    async def ping(self) -> None:
        """Always reachable: it lives in this process."""

    async def close(self) -> None:
        for consumer in self._consumers:
            await consumer.close()
        self._consumers.clear()

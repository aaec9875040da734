"""The broker interface every `pubsub.*` component implements, and its data types.

A component moves opaque messages (the sidecar's CloudEvents, or raw payloads) between
publishers and consumer groups; everything Dapr-specific (envelopes, routes, statuses,
dead letters, tracing) stays in the runtime. The contract, checked by the conformance
suite (tests/runtime/components/pubsub/test_conformance.py):

- `publish` returns only once the broker holds the message (durably, for durable brokers):
  a publish answered 204 is never lost;
- each consumer group (`consumerID`, by default the app id) gets every message of a
  topic; the consumers of one group share them (competing consumers);
- a message is forgotten only when its handler returned True; on False, on an exception,
  or when its consumer died, it is delivered again, to this or another consumer of the
  group, once it has been idle for the component's `processingTimeout`;
- a message still being handled is never handed to a second consumer, however long it
  takes (components keep its claim fresh);
- at most `concurrency` messages are in a handler at once per subscription.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class PubSubError(Exception):
    """The broker failed (unreachable, refused the message, ...)."""


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)
    """Publish-time metadata the broker carried with the message (e.g. content type)."""
    id: str = ""
    """The broker's id for it (a stream entry id, a row number), for logs and spans."""
    redelivered: bool = False
    """Handed out before and not acknowledged (a retry, or its consumer died)."""


Handler = Callable[[Message], Awaitable[bool]]
"""Handles one message: True once it may be forgotten (the app answered SUCCESS or DROP,
or it went to a dead-letter topic), False to have it delivered again later. An exception
counts as False (and is logged by the component)."""


class Consumer(Protocol):
    """A running subscription of one topic for one consumer group."""

    async def close(self) -> None:
        """Stop taking messages; those in a handler get a short grace, the rest are
        delivered again later (they were never acknowledged)."""
        ...


class PubSub(Protocol):
    span_attributes: Mapping[str, str | int]
    """Messaging attributes for its spans: `messaging.system`, and `server.address`/
    `server.port` for a networked broker."""
    features: frozenset[str]
    """Dapr's feature names (e.g. `BULK_PUBLISH`, `MESSAGE_TTL`)."""
    consumer_group: str
    """The group this sidecar consumes in (`consumerID`, by default the app id)."""

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> str:
        """Hand one message to the broker; returns its broker id. Raises `PubSubError`."""
        ...

    async def subscribe(self, topic: str, handler: Handler, *, at_least: int = 1) -> Consumer:
        """Start consuming `topic` in this component's consumer group, with `concurrency`
        messages in handlers at once, or `at_least` if that is more (a batching handler
        needs a batch's worth)."""
        ...

    async def backlog(self, topic: str) -> int:
        """Messages of `topic` this group has not acknowledged yet (waiting or in handlers)."""
        ...

    async def ping(self) -> None:
        """Raise `PubSubError` if the broker cannot be reached now (checked at start, to warn)."""
        ...

    async def close(self) -> None:
        """Close every consumer and connection."""
        ...


class PubSubType(Protocol):
    """A component class, built from its metadata; `app_id` is the default consumer group."""

    def create(self, name: str, metadata: Mapping[str, Any], home: Path, app_id: str) -> PubSub: ...

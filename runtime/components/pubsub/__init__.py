"""Pub/sub components by Dapr type name."""

from .base import Consumer, Handler, Message, PubSub, PubSubError, PubSubType
from .memory import MemoryPubSub
from .redis import RedisPubSub
from .sqlite import SqlitePubSub

PUBSUB_TYPES: dict[str, PubSubType] = {
    "pubsub.in-memory": MemoryPubSub,
    "pubsub.redis": RedisPubSub,
    "pubsub.sqlite": SqlitePubSub,
}

__all__ = [
    "PUBSUB_TYPES",
    "Consumer",
    "Handler",
    "Message",
    "MemoryPubSub",
    "PubSub",
    "PubSubError",
    "PubSubType",
    "RedisPubSub",
    "SqlitePubSub",
]

"""The pub/sub broker contract (runtime/components/pubsub/base.py), run on every component:
`pubsub.in-memory`, `pubsub.redis` on a real redis-server, `pubsub.sqlite` on a real file.

Delivery semantics seen by apps (routes, statuses, dead letters, bulk publish) are tested
through real sidecars in tests/runtime/test_pubsub_api.py, on the same three components.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from outrig.runtime.components.pubsub import PUBSUB_TYPES, Message, PubSub
from outrig.runtime.components.pubsub import consumer as consumer_module
from tests.redis_server import RedisServer

TYPES = ["pubsub.in-memory", "pubsub.redis", "pubsub.sqlite"]
TIMEOUT = 0.5
"""processingTimeout of every broker here: how soon an unacknowledged message comes back."""

MakeBroker = Callable[..., PubSub]


@pytest.fixture(params=TYPES)
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeBroker]:
    """Builds brokers of one type that talk to the same place (server, file, process)."""
    name = f"conf-{secrets.token_hex(4)}"
    base: dict[str, str] = {"processingTimeout": f"{TIMEOUT}s", "redeliverInterval": "0.1s"}
    if request.param == "pubsub.redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        base["redisHost"] = server.address
    elif request.param == "pubsub.sqlite":
        base["databasePath"] = str(tmp_path / "pubsub.db")
        base["pollInterval"] = "20ms"
    made: list[PubSub] = []

    def build(group: str = "app", **metadata: str) -> PubSub:
        broker = PUBSUB_TYPES[request.param].create(name, {**base, **metadata}, tmp_path, group)
        made.append(broker)
        return broker

    yield build
    for broker in made:
        await broker.close()


def topic() -> str:
    return f"t-{secrets.token_hex(4)}"


class Inbox:
    """Collects what a handler got; `answer` decides its return value per message."""

    def __init__(self, answer: Callable[[Message, int], Awaitable[bool]] | None = None) -> None:
        self.got: list[Message] = []
        self.counts: Counter[bytes] = Counter()
        self.answer = answer

    async def __call__(self, message: Message) -> bool:
        self.got.append(message)
        self.counts[message.data] += 1
        if self.answer is None:
            return True
        return await self.answer(message, self.counts[message.data])

    async def until(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():  # noqa: ASYNC110 - conditions on several handlers' state
                await asyncio.sleep(0.02)


def payloads(n: int, prefix: str = "m") -> list[bytes]:
    return [f"{prefix}{i}".encode() for i in range(n)]


async def test_published_messages_arrive_with_their_metadata(make: MakeBroker) -> None:
    broker, name = make(), topic()
    inbox = Inbox()
    consumer = await broker.subscribe(name, inbox)
    sent = payloads(20)
    for data in sent:
        await broker.publish(name, data, {"contentType": "text/plain", "n": data.decode()})
    await inbox.until(lambda: len(inbox.got) >= 20)
    assert sorted(m.data for m in inbox.got) == sorted(sent)
    assert all(m.topic == name and m.metadata["n"] == m.data.decode() for m in inbox.got)
    assert all(m.metadata["contentType"] == "text/plain" for m in inbox.got)
    await consumer.close()


async def test_each_topic_gets_only_its_messages(make: MakeBroker) -> None:
    broker = make()
    names = [topic() for _ in range(5)]
    inboxes = {name: Inbox() for name in names}
    for name in names:
        await broker.subscribe(name, inboxes[name])
    await asyncio.gather(*(broker.publish(n, d, {}) for n in names for d in payloads(10, n)))
    for name, inbox in inboxes.items():
        await inbox.until(lambda inbox=inbox: len(inbox.got) >= 10)  # type: ignore[misc]
        assert sorted(m.data for m in inbox.got) == sorted(payloads(10, name))


async def test_every_group_gets_every_message(make: MakeBroker) -> None:
    name = topic()
    first, second = Inbox(), Inbox()
    await make("app-one").subscribe(name, first)
    await make("app-two").subscribe(name, second)
    publisher = make("publisher")
    sent = payloads(30)
    for data in sent:
        await publisher.publish(name, data, {})
    await first.until(lambda: len(first.got) >= 30)
    await second.until(lambda: len(second.got) >= 30)
    assert sorted(m.data for m in first.got) == sorted(m.data for m in second.got) == sorted(sent)


async def test_consumers_of_one_group_share_the_messages(make: MakeBroker) -> None:
    name = topic()
    in_handler: set[bytes] = set()
    overlaps: list[bytes] = []

    async def slow(message: Message, count: int) -> bool:
        if message.data in in_handler:
            overlaps.append(message.data)
        in_handler.add(message.data)
        await asyncio.sleep(0.01)
        in_handler.discard(message.data)
        return True

    first, second = Inbox(slow), Inbox(slow)
    await make("app").subscribe(name, first)
    await make("app").subscribe(name, second)
    publisher = make("publisher")
    sent = payloads(200)
    await asyncio.gather(*(publisher.publish(name, d, {}) for d in sent))
    await first.until(lambda: len(first.got) + len(second.got) >= 200)
    await asyncio.sleep(TIMEOUT * 2)  # nothing may come back: every message was acknowledged
    together = [m.data for m in first.got + second.got]
    assert sorted(together) == sorted(sent), "each message once, to one consumer of the group"
    assert first.got and second.got, "both consumers took a share"
    assert overlaps == []


async def test_a_message_answered_false_comes_back_until_acknowledged(make: MakeBroker) -> None:
    async def twice_false(message: Message, count: int) -> bool:
        return count > 2

    broker, name = make(), topic()
    inbox = Inbox(twice_false)
    await broker.subscribe(name, inbox)
    await broker.publish(name, b"again", {})
    await inbox.until(lambda: inbox.counts[b"again"] >= 3)
    await asyncio.sleep(TIMEOUT * 2.5)
    assert inbox.counts[b"again"] == 3, "delivered until acknowledged, then never again"


async def test_a_handler_error_counts_as_not_done(make: MakeBroker) -> None:
    async def fails_once(message: Message, count: int) -> bool:
        if count == 1:
            raise RuntimeError("subscriber bug")
        return True

    broker, name = make(), topic()
    inbox = Inbox(fails_once)
    await broker.subscribe(name, inbox)
    await broker.publish(name, b"boom", {})
    await inbox.until(lambda: inbox.counts[b"boom"] >= 2)
    await asyncio.sleep(TIMEOUT * 2)
    assert inbox.counts[b"boom"] == 2


async def test_messages_of_a_dead_consumer_go_to_a_live_one(
    make: MakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_module, "CLOSE_GRACE", 0.05)
    name = topic()
    never = asyncio.Event()

    async def hang(message: Message, count: int) -> bool:
        await never.wait()
        return True

    doomed = Inbox(hang)
    dying = make("app", concurrency="5")
    consumer = await dying.subscribe(name, doomed)
    sent = payloads(5)
    for data in sent:
        await dying.publish(name, data, {})
    await doomed.until(lambda: len(doomed.got) >= 5)
    await consumer.close()  # the handlers are cancelled: nothing was acknowledged

    survivor = Inbox()
    await make("app").subscribe(name, survivor)
    await survivor.until(lambda: len(survivor.got) >= 5, within=TIMEOUT * 10 + 5)
    assert sorted(m.data for m in survivor.got) == sorted(sent)


async def test_a_slow_handler_keeps_its_message(make: MakeBroker) -> None:
    """A handler slower than processingTimeout is not a dead consumer: no one else gets it."""
    name = topic()

    async def slow(message: Message, count: int) -> bool:
        await asyncio.sleep(TIMEOUT * 4)
        return True

    first, second = Inbox(slow), Inbox()
    await make("app").subscribe(name, first)
    publisher = make("publisher")
    await publisher.publish(name, b"long job", {})
    await first.until(lambda: len(first.got) >= 1)
    await make("app").subscribe(name, second)
    await asyncio.sleep(TIMEOUT * 5)
    assert first.counts[b"long job"] == 1
    assert second.got == []


async def test_at_most_concurrency_messages_in_handlers(make: MakeBroker) -> None:
    busy = 0
    peak = 0

    async def track(message: Message, count: int) -> bool:
        nonlocal busy, peak
        busy += 1
        peak = max(peak, busy)
        await asyncio.sleep(0.05)
        busy -= 1
        return True

    broker, name = make("app", concurrency="3"), topic()
    inbox = Inbox(track)
    await broker.subscribe(name, inbox)
    await asyncio.gather(*(broker.publish(name, d, {}) for d in payloads(20)))
    await inbox.until(lambda: len(inbox.got) >= 20)
    assert peak == 3


async def test_a_subscription_can_ask_for_more_than_the_concurrency(make: MakeBroker) -> None:
    """A batching handler (bulk subscribe) needs a batch's worth of messages at once."""
    busy = peak = 0
    release = asyncio.Event()

    async def hold(message: Message, count: int) -> bool:
        nonlocal busy, peak
        busy += 1
        peak = max(peak, busy)
        await release.wait()
        return True

    broker, name = make("app", concurrency="3"), topic()
    inbox = Inbox(hold)
    await broker.subscribe(name, inbox, at_least=6)
    await asyncio.gather(*(broker.publish(name, d, {}) for d in payloads(8)))
    await inbox.until(lambda: len(inbox.got) >= 6)
    await asyncio.sleep(0.2)
    assert peak == 6
    release.set()
    await inbox.until(lambda: len(inbox.got) >= 8)

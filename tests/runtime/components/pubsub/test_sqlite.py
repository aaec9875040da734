"""`pubsub.sqlite`: groups, competing consumers, redelivery, retention, other processes."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from outrig.runtime.components.metadata import MetadataError
from outrig.runtime.components.pubsub import consumer
from outrig.runtime.components.pubsub.base import Handler, Message, PubSubError
from outrig.runtime.components.pubsub.sqlite import SqlitePubSub

Make = Callable[..., SqlitePubSub]

BROKER = """
import asyncio, sys
from pathlib import Path
from outrig.runtime.components.pubsub.sqlite import SqlitePubSub

async def main() -> None:
    path = Path(sys.argv[1])
    broker = SqlitePubSub.create("pubsub", {"processingTimeout": "0.3s"}, path.parent, "app")
"""
PUBLISHER = (
    BROKER
    + """
    for i in range(50):
        await broker.publish("orders", str(i).encode(), {})
    await broker.close()

asyncio.run(main())
"""
)
STUCK_CONSUMER = (
    BROKER
    + """
    async def handler(message):
        print(message.id, flush=True)
        await asyncio.Event().wait()
    await broker.subscribe("orders", handler)
    await asyncio.Event().wait()

asyncio.run(main())
"""
)


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    """Brokers on one file (`tmp_path/pubsub.db`), group "app", all closed at the end."""
    made: list[SqlitePubSub] = []

    def build(**metadata: str) -> SqlitePubSub:
        broker = SqlitePubSub.create("pubsub", {"processingTimeout": "0.3s", **metadata}, tmp_path, "app")
        made.append(broker)
        return broker

    yield build
    for broker in made:
        await broker.close()


class Collect:
    """A handler recording what it got; True unless told otherwise."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> bool:
        self.messages.append(message)
        return True

    @property
    def data(self) -> list[bytes]:
        return [m.data for m in self.messages]


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def rows(path: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_group_created_after_publish_gets_earlier_messages(make: Make) -> None:
    broker = make()
    ids = [await broker.publish("orders", f"m{i}".encode(), {"contenttype": "text/plain"}) for i in range(3)]
    got = Collect()
    await broker.subscribe("orders", got)
    await until(lambda: len(got.messages) == 3)
    assert got.data == [b"m0", b"m1", b"m2"]
    assert [m.id for m in got.messages] == ids
    assert {m.topic for m in got.messages} == {"orders"}
    assert all(m.metadata == {"contenttype": "text/plain"} for m in got.messages)


async def test_each_group_gets_every_message(make: Make) -> None:
    first, second = Collect(), Collect()
    await make(consumerID="g1").subscribe("orders", first)
    await make(consumerID="g2").subscribe("orders", second)
    publisher = make()
    await asyncio.gather(*(publisher.publish("orders", str(i).encode(), {}) for i in range(20)))
    expected = {str(i).encode() for i in range(20)}
    await until(lambda: len(first.messages) == len(second.messages) == 20)
    await asyncio.sleep(0.2)  # nothing more arrives
    assert sorted(first.data) == sorted(second.data) == sorted(expected)


async def test_consumer_in_publishing_process_is_woken_without_polling(make: Make) -> None:
    got = Collect()
    await make(pollInterval="30s").subscribe("orders", got)
    await asyncio.sleep(0.1)  # its fetch is now waiting
    started = time.monotonic()
    await make().publish("orders", b"now", {})
    await until(lambda: got.data == [b"now"], within=2)
    assert time.monotonic() - started < 0.2


async def test_instances_of_one_group_share_messages(make: Make) -> None:
    in_handler: set[str] = set()
    overlaps: list[str] = []
    handled: dict[str, Counter[str]] = {"a": Counter(), "b": Counter()}

    def handler(instance: str) -> Handler:
        async def handle(message: Message) -> bool:
            if message.id in in_handler:
                overlaps.append(message.id)
            in_handler.add(message.id)
            await asyncio.sleep(0.002)
            in_handler.discard(message.id)
            handled[instance][message.id] += 1
            return True

        return handle

    await make().subscribe("orders", handler("a"))
    await make().subscribe("orders", handler("b"))
    publisher = make()
    ids = {await publisher.publish("orders", str(i).encode(), {}) for i in range(200)}
    await until(lambda: set(handled["a"] + handled["b"]) == ids)
    await asyncio.sleep(0.4)  # past the processing timeout: nothing is delivered again
    total = handled["a"] + handled["b"]
    assert overlaps == []
    assert set(total) == ids and set(total.values()) == {1}
    assert handled["a"] and handled["b"], "both instances took part"


async def test_refused_message_is_delivered_again_after_processing_timeout(make: Make) -> None:
    seen: list[tuple[str, float]] = []

    async def refuse_once(message: Message) -> bool:
        seen.append((message.id, time.monotonic()))
        return len(seen) > 1

    broker = make()
    await broker.subscribe("orders", refuse_once)
    msg_id = await broker.publish("orders", b"x", {})
    await until(lambda: len(seen) == 2)
    await asyncio.sleep(0.5)  # acknowledged the second time: no third delivery
    assert [i for i, _ in seen] == [msg_id, msg_id]
    assert 0.29 <= seen[1][1] - seen[0][1] < 0.9  # not held back by a fetch waiting its full second


async def test_messages_of_a_closed_consumer_go_to_another(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "CLOSE_GRACE", 0.05)
    taken: list[tuple[str, float]] = []

    async def hang(message: Message) -> bool:
        taken.append((message.id, time.monotonic()))
        await asyncio.Event().wait()
        return True

    dying, survivor = make(), make()
    await dying.subscribe("orders", hang)
    msg_id = await dying.publish("orders", b"x", {})
    await until(lambda: len(taken) == 1)
    await dying.close()  # the handler is cancelled: never acknowledged
    got = Collect()
    await survivor.subscribe("orders", got)
    await until(lambda: len(got.messages) == 1)
    assert [m.id for m in got.messages] == [msg_id] and got.data == [b"x"]
    assert time.monotonic() - taken[0][1] >= 0.29


async def test_slow_handler_keeps_its_message(make: Make) -> None:
    deliveries: Counter[str] = Counter()

    async def slow(message: Message) -> bool:
        deliveries[message.id] += 1
        await asyncio.sleep(1.0)  # more than three processing timeouts
        return True

    await make().subscribe("orders", slow)
    await make().subscribe("orders", slow)
    msg_id = await make().publish("orders", b"x", {})
    await asyncio.sleep(1.4)
    assert deliveries == Counter({msg_id: 1})


async def test_message_is_deleted_once_every_group_acknowledged_it(make: Make, tmp_path: Path) -> None:
    db = tmp_path / "pubsub.db"
    late_group = make(consumerID="late")
    await (await late_group.subscribe("orders", Collect())).close()  # the group exists, idle
    got = Collect()
    broker = make()
    await broker.subscribe("orders", got)
    for i in range(5):
        await broker.publish("orders", str(i).encode(), {})
    await broker.publish("no-group", b"kept", {})
    await until(lambda: len(got.messages) == 5)
    await asyncio.sleep(0.05)  # the last acknowledgement
    assert rows(db, "messages") == 6 and rows(db, "pending") == 0  # "late" has not had them
    late = Collect()
    await late_group.subscribe("orders", late)
    await until(lambda: len(late.messages) == 5)
    await until(lambda: rows(db, "messages") == 1)
    assert rows(db, "pending") == 0


async def test_expired_messages_are_not_delivered(make: Make, tmp_path: Path) -> None:
    broker = make()
    await broker.publish("orders", b"short", {"ttlInSeconds": "1"})
    await broker.publish("orders", b"long", {"ttlInSeconds": "60"})
    await asyncio.sleep(1.05)
    got = Collect()
    await broker.subscribe("orders", got)
    await until(lambda: len(got.messages) == 1)
    await broker.publish("other", b"sweeps", {})
    assert got.data == [b"long"]
    assert rows(tmp_path / "pubsub.db", "messages") == 1  # the expired one was swept, "long" acked
    with pytest.raises(PubSubError, match="ttlInSeconds"):
        await broker.publish("orders", b"x", {"ttlInSeconds": "soon"})


async def test_max_len_approx_trims_a_topic(make: Make, tmp_path: Path) -> None:
    broker = make(maxLenApprox="10")
    for i in range(30):
        await broker.publish("orders", str(i).encode(), {})
    got = Collect()
    await broker.subscribe("orders", got)
    await until(lambda: len(got.messages) == 10)
    assert got.data == [str(i).encode() for i in range(20, 30)]


async def test_messages_published_by_another_process(make: Make, tmp_path: Path) -> None:
    got = Collect()
    await make().subscribe("orders", got)
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, str(tmp_path / "pubsub.db")
    )
    assert await publisher.wait() == 0
    await until(lambda: len(got.messages) == 50)
    assert sorted(got.data, key=int) == [str(i).encode() for i in range(50)]


async def test_messages_of_a_killed_process_are_delivered_again(make: Make, tmp_path: Path) -> None:
    broker = make()
    ids = {await broker.publish("orders", str(i).encode(), {}) for i in range(3)}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STUCK_CONSUMER, str(tmp_path / "pubsub.db"), stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    taken = {(await asyncio.wait_for(child.stdout.readline(), 10)).decode().strip() for _ in range(3)}
    child.kill()
    await child.communicate()
    assert taken == ids
    got = Collect()
    await broker.subscribe("orders", got)
    await until(lambda: len(got.messages) == 3)
    assert {m.id for m in got.messages} == ids


async def test_bad_metadata_and_unusable_files(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="pollInterval"):
        SqlitePubSub.create("pubsub", {"pollInterval": "0s"}, tmp_path, "app")
    with pytest.raises(MetadataError, match="maxLenApprox"):
        SqlitePubSub.create("pubsub", {"maxLenApprox": "-1"}, tmp_path, "app")
    with pytest.raises(PubSubError, match=str(tmp_path)):
        SqlitePubSub.create("pubsub", {"databasePath": str(tmp_path)}, tmp_path, "app")  # a directory
    broker = SqlitePubSub.create("pubsub", {}, tmp_path, "app")
    assert broker.path == tmp_path / "pubsub.db"
    assert broker.settings.processing_timeout == 10.0
    await broker.ping()
    await broker.close()
    with pytest.raises(PubSubError, match="closed"):
        await broker.publish("orders", b"x", {})

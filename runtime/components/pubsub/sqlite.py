"""`pubsub.sqlite`: the embedded durable broker, one SQLite file shared by a machine's sidecars.

The default `pubsub` component when no resources are given, at `$OUTRIG_HOME/pubsub.db`
(`databasePath` overrides). Sidecar processes sharing the file coordinate through SQLite's
locks only: every step below is one transaction, atomic between processes. Calls run on one
worker thread per component (as `state.sqlite`), in WAL mode with synchronous=NORMAL, so a
published message survives the publisher being killed.

Tables: `messages` (seq, an AUTOINCREMENT row id so it never goes back even after deletes,
topic, data, metadata as JSON, expires_at), `consumer_groups` (topic, group, last_seq: the
cursor) and `pending` (topic, group, seq, claimed_at: handed out, not yet acknowledged).

Claiming: `fetch` takes, in one `BEGIN IMMEDIATE` transaction, the group's pending messages
idle for longer than `processingTimeout` (their consumer died or its handler said False),
then new messages after the cursor, records them as claimed now and moves the cursor. SQLite
has one writer at a time, so seqs commit in order and a cursor never skips a late commit. A
group starts at cursor 0: it gets every message still retained (Redis's `XGROUP CREATE ... 0`),
so messages published before the first subscribe are not lost. `processingTimeout` defaults
to 10s (not Dapr's 60s): consumers are local, claims of slow handlers are kept fresh by the
consumer loop, so the timeout only decides how soon a dead consumer's messages move on.

Retention: the `ack` that leaves a message with no pending row and no group of its topic
behind it deletes it (one indexed statement, no table scan). A topic without groups keeps its
messages. `ttlInSeconds` at publish sets an expiry: expired messages are never delivered and
publishes sweep them (partial index). `maxLenApprox` trims a topic to about that many
messages, checked every tenth of that many publishes of the topic by this component.

Polling: messages from other processes are found by polling every `pollInterval` (50ms) with
a read-only check; the write transaction runs only when there is something to claim. Consumers
in the publisher's own process (one event loop) are woken at once. Idle messages are looked
for on every poll, so `redeliverInterval` is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..metadata import MetadataError, duration_seconds, text, whole_number
from .base import Consumer, Handler, Message, PubSubError
from .consumer import ConsumerLoop, ConsumerSettings

T = TypeVar("T")

IDLE_WAIT = 1.0
"""How long `fetch` waits for a message before returning none (the loop asks again)."""
POLL_INTERVAL = 0.05
"""Measured (2-core VM, one idle subscription, 10s): 0.6-0.7% of one core at 50ms (uvloop or
not), 0.4% at 100ms, 1.7% at 20ms; ten idle subscriptions at 50ms, about 2%. Most of a poll is
the hop to the worker thread and back (~70us), the two indexed reads ~11us."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, data BLOB NOT NULL,
    metadata TEXT NOT NULL, expires_at REAL);
CREATE INDEX IF NOT EXISTS messages_by_topic ON messages (topic, seq);
CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS consumer_groups (
    topic TEXT NOT NULL, group_name TEXT NOT NULL, last_seq INTEGER NOT NULL,
    PRIMARY KEY (topic, group_name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    topic TEXT NOT NULL, group_name TEXT NOT NULL, seq INTEGER NOT NULL, claimed_at REAL NOT NULL,
    PRIMARY KEY (topic, group_name, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_message ON pending (topic, seq);
"""

# Statements; `?1`.. are reused parameters. Every one reads an index prefix, never a whole table.
INSERT_MESSAGE = "INSERT INTO messages (topic, data, metadata, expires_at) VALUES (?, ?, ?, ?)"
SWEEP_EXPIRED = "DELETE FROM messages WHERE expires_at <= ?"
TRIM_TOPIC = """DELETE FROM messages WHERE topic = ?1 AND seq <= (
    SELECT seq FROM messages WHERE topic = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)"""
HAS_NEW = """SELECT EXISTS (SELECT 1 FROM messages WHERE topic = ?1 AND seq > (
    SELECT last_seq FROM consumer_groups WHERE topic = ?1 AND group_name = ?2))"""
IDLE_SEQS = "SELECT seq FROM pending WHERE topic = ? AND group_name = ? AND claimed_at <= ?"
IDLE_MESSAGES = """SELECT p.seq, m.data, m.metadata, m.expires_at
    FROM pending p LEFT JOIN messages m ON m.seq = p.seq
    WHERE p.topic = ? AND p.group_name = ? AND p.claimed_at <= ? ORDER BY p.seq"""
CURSOR = "SELECT last_seq FROM consumer_groups WHERE topic = ? AND group_name = ?"
BACKLOG = """SELECT
    (SELECT COUNT(*) FROM messages WHERE topic = ?1 AND seq > COALESCE(
        (SELECT last_seq FROM consumer_groups WHERE topic = ?1 AND group_name = ?2), 0)),
    (SELECT COUNT(*) FROM pending WHERE topic = ?1 AND group_name = ?2)"""
NEW_MESSAGES = (
    "SELECT seq, data, metadata, expires_at FROM messages WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?"
)
CREATE_GROUP = "INSERT OR IGNORE INTO consumer_groups (topic, group_name, last_seq) VALUES (?, ?, 0)"
SET_CURSOR = "INSERT OR REPLACE INTO consumer_groups (topic, group_name, last_seq) VALUES (?, ?, ?)"
CLAIM = "INSERT OR REPLACE INTO pending (topic, group_name, seq, claimed_at) VALUES (?, ?, ?, ?)"
UNCLAIM = "DELETE FROM pending WHERE topic = ? AND group_name = ? AND seq = ?"
DELETE_IF_DONE = """DELETE FROM messages WHERE seq = ?1
    AND NOT EXISTS (SELECT 1 FROM pending WHERE topic = ?2 AND seq = ?1)
    AND NOT EXISTS (SELECT 1 FROM consumer_groups WHERE topic = ?2 AND last_seq < ?1)"""
"""The ack that leaves no group of the topic behind the message, nor holding it, deletes it."""

_WAKERS: dict[tuple[str, str], set[asyncio.Event]] = {}
"""(database file, topic) -> events of this process's subscriptions, set on publish."""


class _Subscription:
    """One topic's consumer: the `Source` its ConsumerLoop fetches from, and the `Consumer`."""

    def __init__(self, broker: SqlitePubSub, topic: str, handler: Handler, at_least: int = 1) -> None:
        self.broker, self.topic, self.group = broker, topic, broker.settings.group
        self.woken = asyncio.Event()
        self._key = (broker.key, topic)
        _WAKERS.setdefault(self._key, set()).add(self.woken)
        timeout, concurrency = broker.settings.processing_timeout, max(at_least, broker.settings.concurrency)
        name = f"{broker.name}/{topic}"
        self.loop = ConsumerLoop(
            self, handler, name=name, concurrency=concurrency, processing_timeout=timeout
        )

    async def fetch(self, limit: int, exclude: AbstractSet[str]) -> Sequence[Message]:
        broker = self.broker
        deadline = time.monotonic() + IDLE_WAIT
        while True:
            self.woken.clear()  # before claiming: a publish from now on ends the wait below
            snapshot = frozenset(exclude)  # the worker thread must not see it change
            got = await broker._run(functools.partial(broker._claim, self.topic, self.group, limit, snapshot))
            left = deadline - time.monotonic()
            if got or left <= 0:
                return got
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(broker.poll_interval, left)):
                    await self.woken.wait()

    async def ack(self, message: Message) -> None:
        await self.broker._run(lambda: self.broker._ack(self.topic, self.group, int(message.id)))

    async def keep(self, messages: Sequence[Message]) -> None:
        seqs = [int(m.id) for m in messages]
        await self.broker._run(lambda: self.broker._keep(self.topic, self.group, seqs))

    async def close(self) -> None:
        await self.loop.close()
        wakers = _WAKERS.get(self._key, set())
        wakers.discard(self.woken)
        if not wakers:
            _WAKERS.pop(self._key, None)
        self.broker._subscriptions.discard(self)


class SqlitePubSub:
    features = frozenset({"BULK_PUBLISH", "MESSAGE_TTL"})

    def __init__(
        self,
        name: str,
        path: Path,
        settings: ConsumerSettings,
        *,
        poll_interval: float = POLL_INTERVAL,
        max_len: int = 0,
        busy_timeout: float = 10.0,
    ) -> None:
        self.name, self.path, self.settings = name, path, settings
        self.consumer_group = settings.group
        self.poll_interval, self.max_len = poll_interval, max_len
        self.span_attributes: Mapping[str, str | int] = {"messaging.system": "sqlite"}
        self._subscriptions: set[_Subscription] = set()
        self._published: Counter[str] = Counter()
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, timeout=busy_timeout, check_same_thread=False, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise PubSubError(f"cannot open sqlite database {path}: {exc}") from None
        self.key = str(path.resolve())
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pubsub-sqlite-{path.name}")

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any], home: Path, app_id: str) -> SqlitePubSub:
        poll = duration_seconds(metadata, "pollInterval", POLL_INTERVAL)
        if poll <= 0:
            raw = metadata.get("pollInterval")
            raise MetadataError("pollInterval", raw, "pollInterval must be more than 0", 'e.g. "50ms"')
        max_len = whole_number(metadata, "maxLenApprox", 0)
        if max_len < 0:
            raise MetadataError("maxLenApprox", max_len, "maxLenApprox must be 0 (no limit) or more", None)
        path = Path(text(metadata, "databasePath", str(home / "pubsub.db"))).expanduser()
        settings = ConsumerSettings.from_metadata(metadata, app_id, processing_timeout=10.0)
        return cls(name, path, settings, poll_interval=poll, max_len=max_len)

    async def _run(self, work: Callable[[], T]) -> T:
        if self._closed:
            raise PubSubError(f"sqlite pubsub {self.path} is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except sqlite3.Error as exc:
            raise PubSubError(f"sqlite pubsub {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock first: reads and writes are one atomic step."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _publish(self, topic: str, data: bytes, metadata: str, expires_at: float | None) -> int:
        with self._transaction() as conn:
            seq = conn.execute(INSERT_MESSAGE, (topic, data, metadata, expires_at)).lastrowid
            conn.execute(SWEEP_EXPIRED, (time.time(),))
            self._published[topic] += 1
            if self.max_len and self._published[topic] % max(1, self.max_len // 10) == 0:
                conn.execute(TRIM_TOPIC, (topic, self.max_len))
        assert seq is not None
        return seq

    def _claimable(self, topic: str, group: str, exclude: frozenset[str], idle_before: float) -> bool:
        """The read-only check of each poll: no write lock while there is nothing to do."""
        (new,) = self._conn.execute(HAS_NEW, (topic, group)).fetchone()
        if new:
            return True
        idle = (str(seq) for (seq,) in self._conn.execute(IDLE_SEQS, (topic, group, idle_before)))
        return any(seq not in exclude for seq in idle)

    def _claim(self, topic: str, group: str, limit: int, exclude: frozenset[str]) -> list[Message]:
        """Up to `limit` messages claimed for `group`: idle ones first, then new ones."""
        now = time.time()
        idle_before = now - self.settings.processing_timeout
        if not self._claimable(topic, group, exclude, idle_before):
            return []
        out: list[Message] = []
        with self._transaction() as conn:
            gone = []
            for seq, data, metadata, expires_at in conn.execute(IDLE_MESSAGES, (topic, group, idle_before)):
                if data is None or (expires_at is not None and expires_at <= now):
                    gone.append((topic, group, seq))  # trimmed or expired: nothing left to deliver
                elif str(seq) not in exclude and len(out) < limit:
                    out.append(Message(topic, bytes(data), json.loads(metadata), str(seq), redelivered=True))
            conn.executemany(UNCLAIM, gone)
            if len(out) < limit:
                row = conn.execute(CURSOR, (topic, group)).fetchone()
                cursor = row[0] if row else 0
                for seq, data, metadata, expires_at in conn.execute(
                    NEW_MESSAGES, (topic, cursor, limit - len(out))
                ):
                    cursor = seq
                    if expires_at is None or expires_at > now:
                        out.append(Message(topic, bytes(data), json.loads(metadata), str(seq)))
                conn.execute(SET_CURSOR, (topic, group, cursor))
            conn.executemany(CLAIM, [(topic, group, int(m.id), now) for m in out])
        return out

    def _ack(self, topic: str, group: str, seq: int) -> None:
        with self._transaction() as conn:
            conn.execute(UNCLAIM, (topic, group, seq))
            conn.execute(DELETE_IF_DONE, (seq, topic))

    def _keep(self, topic: str, group: str, seqs: Sequence[int]) -> None:
        """One statement for all of a subscription's messages in handlers."""
        marks = ", ".join("?" * len(seqs))
        self._conn.execute(
            f"UPDATE pending SET claimed_at = ? WHERE topic = ? AND group_name = ? AND seq IN ({marks})",
            (time.time(), topic, group, *seqs),
        )

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> str:
        raw_ttl = metadata.get("ttlInSeconds") or 0
        try:
            ttl = int(raw_ttl)
        except ValueError:
            raise PubSubError(f"ttlInSeconds must be a whole number of seconds, got {raw_ttl!r}") from None
        expires_at = time.time() + ttl if ttl > 0 else None
        encoded = json.dumps(dict(metadata))
        seq = await self._run(lambda: self._publish(topic, bytes(data), encoded, expires_at))
        for woken in _WAKERS.get((self.key, topic), ()):
            woken.set()
        return str(seq)

    async def subscribe(self, topic: str, handler: Handler, *, at_least: int = 1) -> Consumer:
        """Creates the group at cursor 0 if new: it starts with every retained message."""
        group = self.settings.group
        await self._run(lambda: self._conn.execute(CREATE_GROUP, (topic, group)))
        subscription = _Subscription(self, topic, handler, at_least)
        self._subscriptions.add(subscription)
        return subscription

    async def backlog(self, topic: str) -> int:
        group = self.settings.group
        row = await self._run(lambda: self._conn.execute(BACKLOG, (topic, group)).fetchone())
        return int(row[0] or 0) + int(row[1] or 0)

    async def ping(self) -> None:
        await self._run(lambda: self._conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        if not self._closed:
            await self._run(self._conn.close)
            self._closed = True
            self._executor.shutdown(wait=True)

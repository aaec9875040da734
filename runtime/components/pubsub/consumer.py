"""The consuming loop every broker shares: fetch, hand out, acknowledge, keep claims fresh.

A broker supplies three operations (`Source`); this loop adds the rest of the contract in
`base.py` once: at most `concurrency` messages in handlers, acknowledgement only after a
handler returned True, claims of messages still in a handler refreshed every third of the
processing timeout (so a slow handler never makes a message look abandoned), and fetch
errors (a broker restart) retried with a capped backoff instead of ending the subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Protocol

from ..metadata import MetadataError, duration_seconds, text, whole_number
from .base import Handler, Message

log = logging.getLogger("outrig.pubsub")

CLOSE_GRACE = 5.0
"""How long `close()` lets handlers in progress finish before cancelling them."""
MAX_BACKOFF = 2.0


@dataclass(frozen=True)
class ConsumerSettings:
    """Dapr's consumer metadata, the same for every pubsub type."""

    group: str
    """`consumerID`: the consumer group; the app id unless set."""
    concurrency: int = 10
    """`concurrency`: messages in handlers at once, per subscription (Dapr's default 10)."""
    processing_timeout: float = 60.0
    """`processingTimeout`: how long an unacknowledged message stays with its consumer
    before it is delivered again (Dapr's default 60s)."""
    redeliver_interval: float = 60.0
    """`redeliverInterval`: how often idle messages are looked for (Dapr's default 60s)."""

    @classmethod
    def from_metadata(
        cls, metadata: Mapping[str, Any], app_id: str, processing_timeout: float = 60.0
    ) -> ConsumerSettings:
        timeout = duration_seconds(metadata, "processingTimeout", processing_timeout)
        if timeout <= 0:
            raise MetadataError("processingTimeout", metadata.get("processingTimeout"),
                                "processingTimeout must be more than 0", 'e.g. "60s"')  # fmt: skip
        concurrency = whole_number(metadata, "concurrency", 10)
        if concurrency < 1:
            raise MetadataError("concurrency", concurrency, "concurrency must be at least 1", None)
        return cls(
            group=text(metadata, "consumerID", app_id),
            concurrency=concurrency,
            processing_timeout=timeout,
            redeliver_interval=duration_seconds(metadata, "redeliverInterval", min(60.0, timeout)) or timeout,
        )


class Source(Protocol):
    async def fetch(self, limit: int, exclude: AbstractSet[str]) -> Sequence[Message]:
        """Up to `limit` messages for this consumer: new ones, and ones idle for longer than
        the processing timeout (redeliveries), skipping ids in `exclude` (still in a
        handler here; a live view, so a message leaving its handler during a wait is seen).
        May wait a little (about a second at most) when there are none."""
        ...

    async def ack(self, message: Message) -> None: ...

    async def keep(self, messages: Sequence[Message]) -> None:
        """Refresh the claim on messages still in a handler."""
        ...


class ConsumerLoop:
    """Runs one subscription until closed (see the module docstring)."""

    def __init__(
        self, source: Source, handler: Handler, *, name: str, concurrency: int, processing_timeout: float
    ) -> None:
        self.source = source
        self.handler = handler
        self.name = name
        self.concurrency = max(1, concurrency)
        self.processing_timeout = processing_timeout
        self._in_flight: dict[str, Message] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        self._runner = asyncio.create_task(self._run(), name=f"consume {name}")
        self._keeper = asyncio.create_task(self._keep_claims(), name=f"keep claims {name}")

    async def _run(self) -> None:
        failures = 0
        failing_since = 0.0
        while True:
            free = self.concurrency - len(self._in_flight)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                messages = await self.source.fetch(free, self._in_flight.keys())
            except Exception as exc:  # a broker restart, a network fault: keep trying
                failures += 1
                if failures == 1:
                    failing_since = time.monotonic()
                    log.warning("%s: cannot fetch messages: %s; retrying", self.name, exc)
                await asyncio.sleep(min(MAX_BACKOFF, 0.05 * 2**failures))
                continue
            if failures:
                log.info("%s: fetching again after %.1fs", self.name, time.monotonic() - failing_since)
                failures = 0
            for message in messages:
                if message.id in self._in_flight:
                    continue
                self._in_flight[message.id] = message
                task = asyncio.create_task(self._handle(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: Message) -> None:
        try:
            try:
                done = await self.handler(message)
            except Exception:
                log.exception("%s: handler failed for message %s; it will be delivered again",
                              self.name, message.id)  # fmt: skip
                done = False
            if done:
                try:
                    await self.source.ack(message)
                except Exception as exc:
                    log.warning("%s: cannot acknowledge message %s (%s); it will be delivered again",
                                self.name, message.id, exc)  # fmt: skip
        finally:
            self._in_flight.pop(message.id, None)
            self._slot_free.set()

    async def _keep_claims(self) -> None:
        period = max(0.05, self.processing_timeout / 3)
        failures = 0
        while True:
            await asyncio.sleep(period)
            if self._in_flight:
                try:
                    await self.source.keep(list(self._in_flight.values()))
                    failures = 0
                except Exception as exc:
                    failures += 1
                    # Two misses in a row and a slow handler's message may be delivered twice.
                    level = logging.WARNING if failures >= 2 else logging.DEBUG
                    log.log(level, "%s: cannot refresh claims (%d in a row): %s", self.name, failures, exc)

    async def close(self) -> None:
        for task in (self._runner, self._keeper):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._runner
        with contextlib.suppress(asyncio.CancelledError):
            await self._keeper
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

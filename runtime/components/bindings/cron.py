"""`bindings.cron`: an input binding that fires on Dapr's schedule syntax (see `schedule`).

Each firing is an event with no body and Dapr's metadata (`timeZone`, `readTimeUTC`); a
firing does not wait for the previous one's delivery, so a slow app does not shift the
schedule. A schedule that cannot be parsed fails the component's load (file, item, value).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..metadata import MetadataError, text
from .base import BindingEvent, EventHandler
from .schedule import Schedule, ScheduleError, parse

log = logging.getLogger("outrig.bindings")


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
CLOSE_GRACE = 2.0
"""Seconds `close` waits for firings still being delivered once they are cancelled."""


class CronBinding:
    def __init__(
        self, name: str, schedule: Schedule, clock: Clock = time.time, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.name = name
        self.schedule = schedule
        self.clock, self.sleep = clock, sleep
        """Injected so tests can run a schedule without waiting for it."""
        self.span_attributes: Mapping[str, str | int] = {"messaging.system": "cron"}
        self._firing: set[asyncio.Task[None]] = set()

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any]) -> CronBinding:
        value = text(metadata, "schedule", required_hint='e.g. "@every 15s" or "0 30 * * * *"')
        try:
            return cls(name, parse(value))
        except ScheduleError as exc:
            raise MetadataError(
                "schedule", value, f"invalid cron schedule: {exc}",
                'six fields with seconds ("*/15 * * * * *"), five ("30 * * * *"), '
                '"@every 5s", or @hourly, @daily, @weekly, @monthly, @yearly',
            ) from None  # fmt: skip

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def read(self, handler: EventHandler) -> None:
        last = self._now()
        while True:
            when = self.schedule.next_after(last)
            if when is None:
                log.warning("cron %s: schedule %r never fires again", self.name, self.schedule.text)
                return
            wait = when.timestamp() - self.clock()
            # Every turn awaits, so even a schedule that misbehaves cannot freeze the event loop.
            await self.sleep(max(0.0, wait))
            if wait < -1.0:  # asleep (a suspended machine): skip the missed firings
                last = self._now()
                continue
            last = when
            event = BindingEvent(
                b"",
                {
                    "timeZone": str(when.tzinfo),
                    "readTimeUTC": when.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                },
            )
            task = asyncio.create_task(handler(event))
            self._firing.add(task)
            task.add_done_callback(self._firing.discard)

    async def close(self) -> None:
        """Cancel the firings still being delivered and wait (briefly) for them to end."""
        tasks = list(self._firing)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_GRACE)

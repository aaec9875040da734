"""`bindings.cron`: events on schedule with Dapr's metadata; bad schedules are metadata errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from outrig.runtime.components.bindings import BindingEvent, CronBinding
from outrig.runtime.components.bindings.schedule import parse
from outrig.runtime.components.metadata import MetadataError


def test_an_invalid_schedule_is_a_metadata_error_naming_the_value() -> None:
    with pytest.raises(MetadataError, match="invalid cron schedule") as caught:
        CronBinding.create("tick", {"schedule": "every minute"})
    assert caught.value.name == "schedule" and caught.value.value == "every minute"
    with pytest.raises(MetadataError, match="schedule is required"):
        CronBinding.create("tick", {})


class FakeClock:
    """Time that moves only when the binding sleeps, so a schedule runs without waiting."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def collect(binding: CronBinding, count: int) -> list[BindingEvent]:
    events: list[BindingEvent] = []
    enough = asyncio.Event()

    async def handler(event: BindingEvent) -> None:
        events.append(event)
        if len(events) >= count:
            enough.set()

    reader = asyncio.create_task(binding.read(handler))
    try:
        await asyncio.wait_for(enough.wait(), 10)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await binding.close()
    return events


async def test_fires_events_with_dapr_metadata_until_closed() -> None:
    clock = FakeClock(datetime(2026, 11, 30, 10, 0, 0, 250000, tzinfo=UTC).timestamp())
    binding = CronBinding("tick", parse("CRON_TZ=UTC */15 * * * * *"), clock, clock.sleep)
    events = await collect(binding, 3)
    assert events[0].data == b""
    assert set(events[0].metadata) == {"timeZone", "readTimeUTC"}
    assert [e.metadata["readTimeUTC"] for e in events[:3]] == [
        "2026-11-30T10:00:15Z", "2026-11-30T10:00:30Z", "2026-11-30T10:00:45Z",
    ]  # fmt: skip
    assert events[0].metadata["timeZone"] == "UTC"


async def test_the_repeated_hour_of_a_fall_back_neither_freezes_nor_skips() -> None:
    # Starts at 01:50 EST, the second pass of New York's repeated hour (06:50 UTC).
    clock = FakeClock(datetime(2026, 11, 1, 6, 50, tzinfo=UTC).timestamp())
    binding = CronBinding("tick", parse("CRON_TZ=America/New_York 0 */15 * * * *"), clock, clock.sleep)
    events = await collect(binding, 3)
    assert [e.metadata["readTimeUTC"] for e in events[:3]] == [
        "2026-11-01T07:00:00Z", "2026-11-01T07:15:00Z", "2026-11-01T07:30:00Z",
    ]  # fmt: skip
    assert all(s >= 0 for s in clock.sleeps)


async def test_a_slow_delivery_is_cancelled_and_awaited_on_close() -> None:
    clock = FakeClock(datetime(2026, 11, 30, tzinfo=UTC).timestamp())
    binding = CronBinding("tick", parse("CRON_TZ=UTC * * * * * *"), clock, clock.sleep)
    started, ended = asyncio.Event(), asyncio.Event()

    async def handler(event: BindingEvent) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    reader = asyncio.create_task(binding.read(handler))
    await asyncio.wait_for(started.wait(), 10)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await binding.close()
    assert ended.is_set()


async def test_really_fires_on_the_event_loop_clock() -> None:
    binding = CronBinding.create("tick", {"schedule": "@every 1s"})
    events = await collect(binding, 1)
    assert events[0].metadata["readTimeUTC"].endswith("Z")

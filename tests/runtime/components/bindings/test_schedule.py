"""Dapr's cron syntax: fields with seconds, five-field form, descriptors, @every, errors."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from outrig.runtime.components.bindings.schedule import ScheduleError, parse

T0 = datetime(2026, 11, 30, 10, 15, 30, 500000, tzinfo=UTC)


def nxt(spec: str, moment: datetime = T0) -> datetime | None:
    return parse(f"CRON_TZ=UTC {spec}").next_after(moment)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("*/15 * * * * *", datetime(2026, 11, 30, 10, 15, 45, tzinfo=UTC)),
        ("0 30 * * * *", datetime(2026, 11, 30, 10, 30, 0, tzinfo=UTC)),
        ("0 0 */4 * * *", datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)),
        ("20 * * * *", datetime(2026, 11, 30, 10, 20, 0, tzinfo=UTC)),
        ("0 0 9 * * MON-FRI", datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)),
        ("0 0 0 1 JAN ?", datetime(2027, 1, 1, tzinfo=UTC)),
        ("0 0 0 13 * FRI", datetime(2026, 12, 4, tzinfo=UTC)),
        ("5,10 16 10 * * *", datetime(2026, 11, 30, 10, 16, 5, tzinfo=UTC)),
        ("30/10 * * * * *", datetime(2026, 11, 30, 10, 15, 40, tzinfo=UTC)),
        ("@hourly", datetime(2026, 11, 30, 11, 0, 0, tzinfo=UTC)),
        ("@daily", datetime(2026, 12, 1, tzinfo=UTC)),
        ("@midnight", datetime(2026, 12, 1, tzinfo=UTC)),
        ("@weekly", datetime(2026, 12, 6, tzinfo=UTC)),
        ("@monthly", datetime(2026, 12, 1, tzinfo=UTC)),
        ("@yearly", datetime(2027, 1, 1, tzinfo=UTC)),
        ("@every 5s", datetime(2026, 11, 30, 10, 15, 35, 500000, tzinfo=UTC)),
        ("@every 1m30s", datetime(2026, 11, 30, 10, 17, 0, 500000, tzinfo=UTC)),
    ],
)
def test_next_firing(spec: str, expected: datetime) -> None:
    assert nxt(spec) == expected


def test_a_time_zone_prefix_is_honoured() -> None:
    fired = parse("CRON_TZ=Asia/Tokyo 0 0 9 * * *").next_after(T0)
    assert fired is not None and fired.astimezone(UTC) == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


def test_a_date_that_never_comes_never_fires() -> None:
    assert nxt("0 0 0 30 FEB *") is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("* * *", "expected 5 or 6 fields"),
        ("* * * * * * *", "expected 5 or 6 fields"),
        ("61 * * * * *", "second field '61': 61 is out of range"),
        ("* * 25 * * *", "hour field '25'"),
        ("* * * * 13 *", "month field '13'"),
        ("* * * * * MOO", "day of week field 'MOO'"),
        ("*/0 * * * * *", "step after '/'"),
        ("10-5 * * * * *", "runs backwards"),
        ("@fortnightly", "unknown descriptor"),
        ("@every", "@every needs a duration"),
        ("@every five", "@every needs a duration"),
        ("@every 500ms", "at least 1s"),
        ("TZ=Mars/Olympus * * * * *", "unknown time zone"),
    ],
)
def test_invalid_schedules_say_which_part_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace("*", r"\*")):
        parse(spec)


NEW_YORK = ZoneInfo("America/New_York")


def firings(spec: str, start: datetime, count: int) -> list[datetime]:
    schedule, moment, out = parse(spec), start, []
    for _ in range(count):
        fired = schedule.next_after(moment)
        assert fired is not None and fired.timestamp() > moment.timestamp()
        out.append(fired.astimezone(UTC))  # `==` across zones is False in a repeated hour
        moment = fired
    return out


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_every_quarter_hour_keeps_firing_through_the_repeated_hour_of_a_fall_back() -> None:
    # 2026-11-01 01:00-02:00 happens twice in New York (EDT, then EST).
    fired = firings("CRON_TZ=America/New_York 0 */15 * * * *", utc(2026, 11, 1, 5, 40), 9)
    gaps = {b.timestamp() - a.timestamp() for a, b in itertools.pairwise(fired)}
    assert gaps == {900.0}
    assert fired[0] == utc(2026, 11, 1, 5, 45) and fired[-1] == utc(2026, 11, 1, 7, 45)


def test_hourly_fires_on_both_passes_of_the_repeated_hour() -> None:
    fired = firings("CRON_TZ=America/New_York @hourly", utc(2026, 11, 1, 4, 30), 3)
    assert fired == [utc(2026, 11, 1, 5), utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)]
    assert [f.astimezone(NEW_YORK).hour for f in fired] == [1, 1, 2]


def test_a_start_inside_the_second_pass_of_the_repeated_hour_moves_forward() -> None:
    second_pass = datetime(2026, 11, 1, 1, 20, tzinfo=NEW_YORK, fold=1)  # 06:20 UTC
    fired = parse("CRON_TZ=America/New_York 0 30 1 * * *").next_after(second_pass)
    assert fired is not None and fired.astimezone(UTC) == utc(2026, 11, 1, 6, 30)
    after = parse("CRON_TZ=America/New_York 0 30 1 * * *").next_after(fired)
    assert after == datetime(2026, 11, 2, 1, 30, tzinfo=NEW_YORK)


def test_a_wall_time_skipped_by_spring_forward_does_not_fire_that_day() -> None:
    # 2026-03-08 02:00-03:00 does not exist in New York.
    fired = parse("CRON_TZ=America/New_York 0 30 2 * * *").next_after(utc(2026, 3, 8, 5))
    assert fired == datetime(2026, 3, 9, 2, 30, tzinfo=NEW_YORK)
    hourly = firings("CRON_TZ=America/New_York @hourly", utc(2026, 3, 8, 5, 30), 2)
    assert hourly == [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7)]  # 01:00 EST, then 03:00 EDT


def test_without_a_zone_each_firing_uses_the_local_offset_of_its_own_day(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        before = utc(2026, 10, 31, 12)  # 08:00 EDT; 09:00 on 1 November is EST
        fired = firings("0 0 9 * * *", before, 3)
        assert [f.astimezone(NEW_YORK).hour for f in fired] == [9, 9, 9]
        assert fired[:2] == [utc(2026, 10, 31, 13), utc(2026, 11, 1, 14)]
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_step_of_one_in_a_day_field_is_still_a_star() -> None:
    # robfig: `*/1` keeps star semantics, so day of month and day of week must both match.
    assert nxt("0 0 0 */1 * WED") == utc(2026, 12, 2)
    assert nxt("0 0 0 */2 * WED") == utc(2026, 12, 1)  # a real step: either day matches


@pytest.mark.parametrize("spec", ["\u00b2 * * * * *", "*/\u0661 * * * * *", "@every \u0661s"])
def test_non_ascii_digits_are_refused_cleanly(spec: str) -> None:
    with pytest.raises(ScheduleError):
        parse(spec)

"""Dapr's cron schedule syntax (robfig/cron with optional seconds and descriptors).

- six fields `second minute hour day-of-month month day-of-week`, or five without the
  seconds (second 0); each `*`, `?`, `5`, `1-5`, `*/15`, `10-50/10`, `5/10`, lists `1,3,5`,
  month names `JAN`-`DEC` and day names `SUN`-`SAT`;
- `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`;
- `@every 5s`, `@every 1m30s` (a Go duration, at least one second);
- an optional leading `CRON_TZ=Europe/Paris ` (or `TZ=`) for the time zone; local time
  otherwise.
As in robfig/cron, when both day fields are restricted a day matching either one fires (a
`*`, `?` or `*/1` day field is not a restriction: `0 0 0 */1 * WED` fires on Wednesdays only).
Daylight saving time as robfig/cron: the repeated hour of a fall-back fires on both passes,
a wall time skipped by a spring-forward does not fire that day. Without a zone the machine's
local zone applies, with the offset of each firing (not the offset at start).
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from ..metadata import parse_duration

DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 6, DAYS),
)
HORIZON_YEARS = 5
"""How far ahead a schedule may have no match before it counts as never firing (Feb 30)."""


class ScheduleError(ValueError):
    """A schedule that cannot be parsed; the message says which part and why."""


@dataclass(frozen=True)
class Schedule:
    text: str
    zone: tzinfo | None
    every: float | None = None
    """For `@every`: the period in seconds (the fields below are then unused)."""
    seconds: frozenset[int] = frozenset()
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    any_day: bool = True
    """True when day of month or day of week is `*`/`?` (then both must match)."""

    def next_after(self, moment: datetime) -> datetime | None:
        """The first firing time strictly after `moment` (an aware datetime), or None.

        The search walks instants (as robfig/cron does), reading each one's wall time in the
        zone (the machine's local zone when none is given, resolved per instant): so the
        repeated hour of a fall-back fires on both passes and a skipped wall time of a
        spring-forward never fires, and the answer is always after `moment`.
        """
        start = moment.astimezone(UTC)
        if self.every is not None:
            return self._local(start + timedelta(seconds=self.every))
        t = start.replace(microsecond=0) + timedelta(seconds=1)
        limit = self._local(t).year + HORIZON_YEARS
        while True:
            local = self._local(t)
            if local.year > limit:
                return None
            if local.month not in self.months:
                year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
                later = self._instant(datetime(year, month, 1))
            elif not self._day_matches(local):
                later = self._instant(datetime(local.year, local.month, local.day) + timedelta(days=1))
            elif local.hour not in self.hours:
                later = t - timedelta(minutes=local.minute, seconds=local.second) + timedelta(hours=1)
            elif local.minute not in self.minutes:
                later = t - timedelta(seconds=local.second) + timedelta(minutes=1)
            elif local.second not in self.seconds:
                later = t + timedelta(seconds=1)
            else:
                return local
            t = later if later > t else t + timedelta(seconds=1)

    def _local(self, instant: datetime) -> datetime:
        """The instant in the schedule's zone (local time, with that instant's offset, if none)."""
        return instant.astimezone(self.zone) if self.zone is not None else instant.astimezone()

    def _instant(self, wall: datetime) -> datetime:
        """The UTC instant of a naive wall time in the schedule's zone (first pass if repeated)."""
        if self.zone is not None:
            return wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        return datetime.fromtimestamp(wall.replace(fold=0).timestamp(), UTC)

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        return (dom and dow) if self.any_day else (dom or dow)


def parse(text: str) -> Schedule:
    """Parse a schedule; `ScheduleError` names the part that is wrong."""
    spec = text.strip()
    zone: tzinfo | None = None
    if spec.startswith(("TZ=", "CRON_TZ=")):
        head, _, spec = spec.partition(" ")
        name = head.split("=", 1)[1]
        try:
            zone = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"unknown time zone {name!r}") from None
        spec = spec.strip()
    if not spec:
        raise ScheduleError("the schedule is empty")
    if spec.startswith("@every"):
        return Schedule(text, zone, every=_every(spec[len("@every") :].strip()))
    if spec.startswith("@"):
        expanded = DESCRIPTORS.get(spec.lower())
        if expanded is None:
            known = ", ".join([*DESCRIPTORS, "@every <duration>"])
            raise ScheduleError(f"unknown descriptor {spec!r} (known: {known})")
        spec = expanded
    fields = spec.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ScheduleError(
            f"expected 5 or 6 fields (second minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    seconds, minutes, hours, days, months, weekdays = (
        _field(value, *spec_) for value, spec_ in zip(fields, FIELDS, strict=True)
    )
    any_day = _starred(fields[3]) or _starred(fields[5])
    return Schedule(text, zone, None, seconds, minutes, hours, days, months, weekdays, any_day)


def _starred(value: str) -> bool:
    """robfig's "star" day field: a `*` or `?` part with no step above 1 (`*/1` counts)."""
    for part in value.split(","):
        span, slash, step = part.partition("/")
        if span in ("*", "?") and (not slash or int(step) <= 1):
            return True
    return False


def _every(value: str) -> float:
    seconds = parse_duration(value)
    if seconds is None:
        raise ScheduleError(f"@every needs a duration such as 5s, 1m30s or 2h, got {value!r}")
    if seconds < 1:
        raise ScheduleError(f"@every {value}: the period must be at least 1s")
    return seconds


def _field(value: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    chosen: set[int] = set()
    for part in value.split(","):
        chosen.update(_part(part, name, low, high, names))
    return frozenset(chosen)


def _part(part: str, name: str, low: int, high: int, names: dict[str, int]) -> range:
    where = f"{name} field {part!r}"
    span, slash, step_text = part.partition("/")
    step = 1
    if slash:
        if not _decimal(step_text) or int(step_text) == 0:
            raise ScheduleError(f"{where}: the step after '/' must be a whole number above 0")
        step = int(step_text)
    if span in ("*", "?"):
        first, last = low, high
    else:
        start, dash, end = span.partition("-")
        first = _number(start, where, low, high, names)
        last = _number(end, where, low, high, names) if dash else (high if slash else first)
        if last < first:
            raise ScheduleError(f"{where}: the range runs backwards")
    return range(first, last + 1, step)


def _number(text: str, where: str, low: int, high: int, names: dict[str, int]) -> int:
    named = names.get(text.upper())
    if named is not None:
        return named
    if not _decimal(text):
        raise ScheduleError(f"{where}: {text!r} is not a number between {low} and {high}")
    value = int(text)
    if not low <= value <= high:
        raise ScheduleError(f"{where}: {value} is out of range ({low}-{high})")
    return value


def _decimal(text: str) -> bool:
    """ASCII digits only (`str.isdigit` accepts `²` and other digits `int` refuses or misreads)."""
    return text.isascii() and text.isdecimal()

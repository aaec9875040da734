"""Go-style durations: the strings Dapr accepts mean the same seconds here."""

from __future__ import annotations

import pytest

from outrig.middleware.resiliency import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1h2m3.5s", 3723.5),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("100ns", 1e-7),
        ("0", 0.0),
        ("-0", 0.0),
        ("+2s", 2.0),
        (" 15s ", 15.0),
    ],
)
def test_parses_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid duration '': it is empty; write it with a unit, e.g. \"500ms\""),
        ("5", "invalid duration '5': missing unit after 5 (units: ns, us, ms, s, m, h)"),
        ("1m30", "invalid duration '1m30': missing unit after 30"),
        ("5sec", "invalid duration '5sec': unknown unit 'sec' (units: ns, us, ms, s, m, h)"),
        ("5 s", "invalid duration '5 s': unknown unit ' s'"),
        ("s", "invalid duration 's': expected a number at 's'"),
        ("1.2.3s", "invalid duration '1.2.3s': missing unit after 1.2"),
        ("-5s", "invalid duration '-5s': a duration cannot be negative"),
    ],
)
def test_a_bad_duration_is_named_with_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_duration(text)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (5, "5s"), (90, "1m30s"), (3600, "1h"), (3723.5, "1h2m3.5s")],
)
def test_formats_seconds_for_messages(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)

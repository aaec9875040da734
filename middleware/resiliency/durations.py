"""Go-style durations ("500ms", "5s", "1m30s"), as Dapr's resiliency policies are written.

Dapr parses them with Go's `time.ParseDuration`, so the same strings must mean the same
here; this module keeps its own small parser so the package does not depend on the runtime.
"""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_UNIT_NAMES = "ns, us, ms, s, m, h"
_EXAMPLE = 'write it with a unit, e.g. "500ms", "5s" or "1m30s"'
_PART = re.compile(r"(\d+\.?\d*|\.\d+)([^\d.]*)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration: a sequence of number+unit ("1h2m3.5s"), or a bare "0".

    A ValueError names the string and what is wrong with it. A negative duration is an
    error: no resiliency setting has a use for one.
    """
    value = text.strip()
    sign = value[:1]
    if sign in ("+", "-"):
        value = value[1:]
    if not value:
        raise ValueError(f"invalid duration {text!r}: it is empty; {_EXAMPLE}")
    if value == "0":
        return 0.0
    total, position = 0.0, 0
    while position < len(value):
        match = _PART.match(value, position)
        if match is None:
            raise ValueError(
                f"invalid duration {text!r}: expected a number at {value[position:]!r}; {_EXAMPLE}"
            )
        number, unit = match.groups()
        if not unit:
            raise ValueError(f"invalid duration {text!r}: missing unit after {number} (units: {_UNIT_NAMES})")
        if unit not in _UNITS:
            raise ValueError(f"invalid duration {text!r}: unknown unit {unit!r} (units: {_UNIT_NAMES})")
        total += float(number) * _UNITS[unit]
        position = match.end()
    if sign == "-" and total > 0:
        raise ValueError(f"invalid duration {text!r}: a duration cannot be negative")
    return total


def format_duration(seconds: float) -> str:
    """Seconds as a short Go-style duration ("500ms", "5s", "1m30s"), for messages."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{rest:g}s" if rest else ""]
    return "".join(parts)

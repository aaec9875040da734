"""Reading a Component's `spec.metadata` values as Dapr writes them, with precise errors.

Values arrive as YAML gave them (strings mostly, sometimes numbers). Every component type
parses them here, so a bad value is reported the same way everywhere: a `MetadataError`
naming the field, which the sidecar turns into file:line, the metadata item and its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

Default = TypeVar("Default", int, int | None, float, str)
REDACTED = "<from a secret store>"
"""What error messages show instead of a metadata value that came from a secret store."""


class MetadataError(ValueError):
    """A component metadata field that cannot be used; the sidecar names its file and line."""

    def __init__(self, name: str, value: object, message: str, hint: str | None) -> None:
        super().__init__(message)
        self.name, self.value, self.message, self.hint = name, value, message, hint


def _given(metadata: Mapping[str, Any], name: str) -> Any:
    """The value of `name`, or None when it is missing or empty (as Dapr treats both)."""
    value = metadata.get(name)
    return None if value == "" else value


def text(
    metadata: Mapping[str, Any], name: str, default: str = "", *, required_hint: str | None = None
) -> str:
    """A string; with `required_hint`, a missing value is an error with that hint."""
    value = _given(metadata, name)
    if value is None:
        if required_hint is not None:
            raise MetadataError(name, metadata.get(name), f"{name} is required", required_hint)
        return default
    return str(value)


def whole_number(metadata: Mapping[str, Any], name: str, default: Default) -> int | Default:
    raw = _given(metadata, name)
    if raw is None:
        return default
    try:
        return int(str(raw))
    except ValueError:
        raise MetadataError(name, raw, f"{name} must be a whole number", None) from None


def flag(metadata: Mapping[str, Any], name: str, default: bool = False) -> bool:
    given = _given(metadata, name)
    if given is None:
        return default
    raw = str(given).strip().lower()
    if raw not in ("true", "false", "1", "0"):
        raise MetadataError(name, metadata.get(name), f"{name} must be true or false", None)
    return raw in ("true", "1")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str) -> float | None:
    """Seconds of a Go-style duration ("500ms", "1m30s"), or None when it is not one."""
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def duration_seconds(metadata: Mapping[str, Any], name: str, default: float) -> float:
    """A Go-style duration ("500ms", "5s", "1m30s"), as Dapr's component metadata takes them."""
    raw = _given(metadata, name)
    if raw is None:
        return default
    seconds = parse_duration(str(raw).strip())
    if seconds is None:
        raise MetadataError(
            name, raw, f"{name} must be a duration", 'write it with a unit, e.g. "500ms" or "5s"'
        )
    return seconds

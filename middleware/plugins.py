"""Finding middleware types by name and building them from validated, typed config.

A middleware type is a class with a nested dataclass `Config` and an `__init__` that
takes one. Built-ins and third-party plugins (entry-point group `outrig.middleware`, the
entry point's name being the type, e.g. `middleware.http.uppercase`) are found the same
way, so our own middleware proves the plugin API.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

import pydantic

from ._call import Middleware
from ._guard import DEFAULT_OWN_TIME_LIMIT, Guarded

ENTRY_POINT_GROUP = "outrig.middleware"


MiddlewareType = Callable[[Any], Middleware]
"""A middleware class: it has a nested `Config` (a dataclass) and is built from one."""


class PluginError(Exception):
    """A middleware type that is unknown, or config that does not fit its `Config`."""

    def __init__(self, message: str, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


def _builtins() -> dict[str, MiddlewareType]:
    from .headers import Headers
    from .ratelimit import DaprRateLimit, RateLimit
    from .uppercase import Uppercase

    return {
        "middleware.http.uppercase": Uppercase,
        "middleware.outrig.headers": Headers,
        "middleware.http.ratelimit": DaprRateLimit,
        "middleware.outrig.ratelimit": RateLimit,
    }


def available_types() -> dict[str, MiddlewareType]:
    """Every known middleware type by name: built-ins first, then installed plugins."""
    found = _builtins()
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.load())
    return found


def build(type_name: str, metadata: Mapping[str, Any], name: str | None = None) -> Middleware:
    """Build one middleware of `type_name` from its metadata, validated against its Config.

    With a `name` (the component's), the middleware comes guarded: its failures fail
    only the call at hand, with an error naming it (see `Guarded`). A type may set a class
    attribute `own_time_limit` (seconds, or None for no limit) when it waits on purpose.
    """
    types = available_types()
    try:
        cls = types[type_name]
    except KeyError:
        known = ", ".join(sorted(types))
        raise PluginError(
            f"unknown middleware type {type_name!r} (known: {known}); install the plugin "
            f"that provides it or fix spec.type",
            "spec.type",
            type_name,
        ) from None
    middleware = cls(validate_config(type_name, config_type_of(type_name, cls), metadata))
    if name is None:
        return middleware
    limit = getattr(cls, "own_time_limit", DEFAULT_OWN_TIME_LIMIT)
    return Guarded(name, type_name, middleware, limit)


def config_type_of(type_name: str, cls: MiddlewareType) -> type[Any]:
    config_type = getattr(cls, "Config", None)
    if not isinstance(config_type, type):
        raise PluginError(
            f"middleware {type_name!r} ({cls!r}) has no nested `Config` class; declare one "
            "(an empty dataclass if it takes no settings)",
            "spec.type",
            type_name,
        )
    return config_type


def validate_config(plugin: str, config_type: type[Any], metadata: Mapping[str, Any]) -> Any:
    """Check `metadata` against a plugin's Config; strings convert as pydantic's lax mode does."""
    if dataclasses.is_dataclass(config_type):
        known = {f.name for f in dataclasses.fields(config_type)}
        for name, value in metadata.items():
            if name not in known:
                raise PluginError(
                    f"middleware {plugin!r} has no setting {name!r} "
                    f"(settings: {', '.join(sorted(known)) or 'none'})",
                    name,
                    value,
                )
    try:
        return pydantic.TypeAdapter(config_type).validate_python(dict(metadata))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "metadata"
        value = first.get("input")
        raise PluginError(
            f"middleware {plugin!r} setting {field!r}: {first['msg']} (got {value!r})",
            field,
            value,
        ) from None

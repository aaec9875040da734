"""The binding interfaces: output bindings run operations, input bindings produce events.

An output binding lists the operations it supports (Dapr's `create`, `get`, `delete`,
`list`, HTTP verbs...) and answers each with data and metadata, which the HTTP API returns
as the body and `metadata.*` headers. An input binding pushes events to a handler until
it is closed; the sidecar turns each event into a call to the app.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class BindingError(Exception):
    """The binding could not do what was asked (a 500 unless a subclass says otherwise)."""

    status = 500


class BindingRequestError(BindingError):
    """The request itself is wrong (a missing `key`, a path outside the root): a 400."""

    status = 400


class BindingNotFoundError(BindingError):
    """The thing asked for does not exist (a file, a key): a 404."""

    status = 404


@dataclass(frozen=True)
class BindingRequest:
    operation: str
    data: bytes = b""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BindingResponse:
    data: bytes = b""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BindingEvent:
    """One event of an input binding: the body and the headers the app receives."""

    data: bytes = b""
    metadata: Mapping[str, str] = field(default_factory=dict)


EventHandler = Callable[[BindingEvent], Coroutine[Any, Any, None]]


class OutputBinding(Protocol):
    operations: tuple[str, ...]
    span_attributes: Mapping[str, str | int]
    """Attributes for its CLIENT spans (`server.address`, `db.system.name`...)."""

    async def invoke(self, request: BindingRequest) -> BindingResponse: ...

    async def close(self) -> None: ...


class InputBinding(Protocol):
    span_attributes: Mapping[str, str | int]

    async def read(self, handler: EventHandler) -> None:
        """Produce events into `handler` until closed (runs as a task of its own)."""
        ...

    async def close(self) -> None: ...


Binding = Any
"""An input binding, an output binding, or both (one component can be either in Dapr)."""


class BindingType(Protocol):
    """A binding class, built from its component's metadata (`MetadataError` on a bad field)."""

    def create(self, name: str, metadata: Mapping[str, Any]) -> Binding: ...


def is_output(binding: Binding) -> bool:
    return hasattr(binding, "invoke")


def is_input(binding: Binding) -> bool:
    return hasattr(binding, "read")

"""Bindings by Dapr type name."""

from .base import (
    Binding,
    BindingError,
    BindingEvent,
    BindingNotFoundError,
    BindingRequest,
    BindingRequestError,
    BindingResponse,
    BindingType,
    EventHandler,
    InputBinding,
    OutputBinding,
    is_input,
    is_output,
)
from .cron import CronBinding
from .http import HttpBinding
from .localstorage import LocalStorageBinding
from .redis import RedisBinding

BINDING_TYPES: dict[str, BindingType] = {
    "bindings.cron": CronBinding,
    "bindings.http": HttpBinding,
    "bindings.localstorage": LocalStorageBinding,
    "bindings.redis": RedisBinding,
}

__all__ = [
    "BINDING_TYPES",
    "Binding",
    "BindingError",
    "BindingEvent",
    "BindingNotFoundError",
    "BindingRequest",
    "BindingRequestError",
    "BindingResponse",
    "BindingType",
    "CronBinding",
    "EventHandler",
    "HttpBinding",
    "InputBinding",
    "LocalStorageBinding",
    "OutputBinding",
    "RedisBinding",
    "is_input",
    "is_output",
]

"""Configuration stores by Dapr type name."""

from .base import (
    DELETED_EVENTS,
    RESYNC,
    Change,
    ChangeHandler,
    ConfigurationError,
    ConfigurationStore,
    ConfigurationStoreType,
    Item,
    Watch,
)
from .redis import RedisConfigurationStore

CONFIGURATION_TYPES: dict[str, ConfigurationStoreType] = {
    "configuration.redis": RedisConfigurationStore,
}

__all__ = [
    "CONFIGURATION_TYPES",
    "DELETED_EVENTS",
    "RESYNC",
    "Change",
    "ChangeHandler",
    "ConfigurationError",
    "ConfigurationStore",
    "ConfigurationStoreType",
    "Item",
    "RedisConfigurationStore",
    "Watch",
]

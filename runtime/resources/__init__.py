"""Dapr resource files: Components and the Configuration, read with precise errors."""

from .documents import ResourceError
from .loader import Component, Resources, configured_handlers, load
from .models import ConfigurationResource

__all__ = ["Component", "ConfigurationResource", "ResourceError", "Resources", "configured_handlers", "load"]

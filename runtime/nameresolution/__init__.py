"""Finding the sidecar of an app id: pluggable, local files by default."""

from .base import Address, NameResolver
from .local import LocalResolver
from .nameformat import NameFormatError, NameFormatResolver

__all__ = ["Address", "LocalResolver", "NameFormatError", "NameFormatResolver", "NameResolver"]

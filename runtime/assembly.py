"""Building the components named in the resources, with errors that point into the YAML.

Each building block with components (state, pubsub) configures them the same way: the
Components of its types, or one embedded default when there are none; a bad metadata
value is a startup error naming the file, line, item and value.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .components.metadata import MetadataError
from .resources import Component, Resources
from .servers import StartupError

T = TypeVar("T")


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    type: str
    settings: Mapping[str, Any]
    component: Component | None
    """None for the embedded default."""


def specs(
    resources: Resources, types: Collection[str], default_name: str, default_type: str
) -> list[ComponentSpec]:
    configured = [
        ComponentSpec(c.name, c.type, c.resource.settings(), c)
        for c in resources.components
        if c.type in types
    ]
    return configured or [ComponentSpec(default_name, default_type, {}, None)]


def build(
    spec: ComponentSpec, what: str, create: Callable[[], T], failures: tuple[type[Exception], ...]
) -> T:
    """`create()`, turning its failures into startup errors about `spec`'s resource."""
    caught: tuple[type[Exception], ...] = (ValueError, OSError, *failures)
    try:
        return create()
    except MetadataError as exc:
        assert spec.component is not None, f"the default {what} has no metadata to get wrong"
        raise spec.component.metadata_error(exc) from None
    except caught as exc:
        if spec.component is None:
            raise StartupError(f"cannot open the default {what}: {exc}") from None
        raise spec.component.document.error(("spec", "metadata"), str(exc)) from None

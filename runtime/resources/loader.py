"""Loading Dapr resource files (`--resources-path`, `--config`) into validated models."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from outrig.middleware import Middleware, PluginError, plugins

from ..blocks.subscriptions import DECLARATIVE, Subscription, SubscriptionError, parse
from ..components.bindings import BINDING_TYPES
from ..components.configuration import CONFIGURATION_TYPES
from ..components.lock import LOCK_TYPES
from ..components.metadata import REDACTED, MetadataError
from ..components.pubsub import PUBSUB_TYPES
from ..components.secretstores import SECRET_STORE_TYPES
from ..components.state import STORE_TYPES
from .documents import Document, ResourceError, read_documents
from .models import (
    ComponentResource,
    ConfigurationResource,
    PipelineSpec,
    ResiliencyResource,
    SubscriptionResource,
)

log = logging.getLogger("outrig.resources")

Model = TypeVar("Model", bound=pydantic.BaseModel)

MIDDLEWARE_PREFIX = "middleware."


@dataclass
class Component:
    resource: ComponentResource
    document: Document

    @property
    def name(self) -> str:
        return self.resource.metadata.name

    @property
    def type(self) -> str:
        return self.resource.spec.type

    def metadata_error(self, exc: MetadataError) -> ResourceError:
        """A bad `spec.metadata` value, pointed at in the file."""
        items = self.resource.spec.metadata
        index = next((i for i, item in enumerate(items) if item.name == exc.name), None)
        path: tuple[str | int, ...] = (
            ("spec", "metadata") if index is None else ("spec", "metadata", index, "value")
        )
        # A value read from a secret store (secretKeyRef) is never shown.
        secret = index is not None and items[index].secretKeyRef is not None
        value = REDACTED if secret else exc.value
        return self.document.error(path, exc.message, value, exc.hint)


@dataclass
class Resources:
    """Everything read from the resource folders and the Configuration file."""

    components: list[Component] = field(default_factory=list)
    configuration: ConfigurationResource | None = None
    configuration_document: Document | None = None
    subscriptions: list[Subscription] = field(default_factory=list)
    """Declarative subscriptions (`Subscription` resources) scoped to this app."""
    resiliencies: list[tuple[ResiliencyResource, Document]] = field(default_factory=list)
    """`Resiliency` resources scoped to this app, with where they came from."""

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)


def validate(document: Document, model: type[Model]) -> Model:
    """Validate a document against a model; the first problem becomes a precise ResourceError."""
    try:
        return model.model_validate(document.data)
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]
        path = tuple(problem["loc"])
        raise document.error(path, problem["msg"], problem.get("input")) from None


def _resource_files(folder: Path) -> Iterable[Path]:
    if not folder.exists():
        raise ResourceError(folder, None, "resources path does not exist", hint="check --resources-path")
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load(resources_paths: Sequence[Path], config_path: Path | None, app_id: str) -> Resources:
    resources = Resources()
    for folder in resources_paths:
        for file in _resource_files(folder):
            for doc in read_documents(file):
                _add(resources, doc, app_id)
    if config_path is not None:
        docs = list(read_documents(config_path))
        configs = [d for d in docs if d.kind == "Configuration"]
        if len(configs) != 1:
            raise ResourceError(
                config_path,
                None,
                f"expected exactly one Configuration resource, found {len(configs)}",
                hint="--config takes a file holding one `kind: Configuration` document",
            )
        resources.configuration = validate(configs[0], ConfigurationResource)
        resources.configuration_document = configs[0]
        _warn_unknown(configs[0], resources.configuration)
    return resources


def _add(resources: Resources, doc: Document, app_id: str) -> None:
    if doc.kind == "Component":
        component = validate(doc, ComponentResource)
        if component.scopes and app_id not in component.scopes:
            return
        if resources.component(component.metadata.name) is not None:
            raise doc.error(
                ("metadata", "name"),
                "a component with this name is already loaded",
                component.metadata.name,
                hint="component names must be unique",
            )
        if not _supported(component.spec.type):
            supported = ", ".join(["middleware.*", *sorted(STORE_TYPES), *sorted(PUBSUB_TYPES),
                                   *sorted(SECRET_STORE_TYPES), *sorted(BINDING_TYPES),
                                   *sorted(CONFIGURATION_TYPES), *sorted(LOCK_TYPES)])  # fmt: skip
            raise doc.error(
                ("spec", "type"),
                "component type not supported by this outrig version",
                component.spec.type,
                hint=f"supported: {supported} (see README: what works today)",
            )
        resources.components.append(Component(component, doc))
    elif doc.kind == "Resiliency":
        resiliency = validate(doc, ResiliencyResource)
        if not resiliency.scopes or app_id in resiliency.scopes:
            resources.resiliencies.append((resiliency, doc))
    elif doc.kind == "Subscription":
        subscription = _subscription(doc, app_id)
        if subscription is not None:
            resources.subscriptions.append(subscription)
    elif doc.kind == "Configuration":
        log.info("%s: Configuration %r ignored here; pass it with --config", doc.file, doc.name)
    else:
        log.warning("%s: resource kind %r not supported yet; ignored", doc.file, doc.kind)


def _supported(component_type: str) -> bool:
    return (
        component_type.startswith(MIDDLEWARE_PREFIX)
        or component_type in STORE_TYPES
        or component_type in PUBSUB_TYPES
        or component_type in SECRET_STORE_TYPES
        or component_type in BINDING_TYPES
        or component_type in CONFIGURATION_TYPES
        or component_type in LOCK_TYPES
    )


def _subscription(doc: Document, app_id: str) -> Subscription | None:
    resource = validate(doc, SubscriptionResource)
    if resource.scopes and app_id not in resource.scopes:
        return None
    try:
        return parse(resource.spec, DECLARATIVE)
    except SubscriptionError as exc:
        path = ("spec", *_field_path(exc.field)) if exc.field else ("spec",)
        raise doc.error(path, exc.message, exc.value) from None


def _field_path(dotted_field: str) -> tuple[str | int, ...]:
    """`routes.rules[0].match` -> ("routes", "rules", 0, "match")."""
    parts: list[str | int] = []
    for piece in dotted_field.replace("]", "").split("."):
        name, *indexes = piece.split("[")
        if name:
            parts.append(name)
        parts.extend(int(i) for i in indexes)
    return tuple(parts)


def _warn_unknown(doc: Document, config: ConfigurationResource) -> None:
    extra = sorted((config.spec.model_extra or {}).keys())
    if extra:
        log.warning(
            "%s: Configuration %r: fields not used by outrig: %s",
            doc.file,
            doc.name,
            ", ".join(f"spec.{k}" for k in extra),
        )


def configured_handlers(resources: Resources, pipeline: str) -> list[tuple[str, Middleware]]:
    """Build the middleware of `spec.httpPipeline` or `spec.appHttpPipeline`, in declared
    order, each with its component's name."""
    config, doc = resources.configuration, resources.configuration_document
    if config is None or doc is None:
        return []
    spec: PipelineSpec = getattr(config.spec, pipeline)
    built: list[tuple[str, Middleware]] = []
    for i, handler in enumerate(spec.handlers):
        path: tuple[str | int, ...] = ("spec", pipeline, "handlers", i)
        component = resources.component(handler.name)
        if component is None:
            known = [c.name for c in resources.components if c.type.startswith(MIDDLEWARE_PREFIX)]
            raise doc.error(
                (*path, "name"),
                "no middleware component with this name",
                handler.name,
                hint=f"add a Component named {handler.name!r} of type {handler.type!r} to a "
                f"--resources-path folder (middleware components loaded: {', '.join(known) or 'none'})",
            )
        if component.type != handler.type:
            raise doc.error(
                (*path, "type"),
                f"component {handler.name!r} is of type {component.type!r}",
                handler.type,
                hint="make the handler's type match the component's spec.type",
            )
        built.append((handler.name, _build(component)))
    return built


def _build(component: Component) -> Middleware:
    settings: dict[str, Any] = component.resource.settings()
    try:
        return plugins.build(component.type, settings, component.name)
    except PluginError as exc:
        cdoc = component.document
        if exc.field == "spec.type":
            raise cdoc.error(("spec", "type"), str(exc)) from None
        index = next((i for i, m in enumerate(component.resource.spec.metadata) if m.name == exc.field), None)
        path: tuple[str | int, ...] = (
            ("spec", "metadata") if index is None else ("spec", "metadata", index, "value")
        )
        raise cdoc.error(path, str(exc)) from None

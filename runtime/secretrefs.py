"""`secretKeyRef` in components' metadata, resolved at load from the named secret store.

Dapr's form: a metadata item `{name: redisPassword, secretKeyRef: {name: redis, key:
password}}` takes its value from the secret `redis` (its key `password`; the key defaults
to the secret's name) of the store the component's `auth.secretStore` names. The value
replaces the item's `value` before any component is built, so every component type reads
it as it reads a plain value. A ref that cannot be resolved stops the start with the file,
line, component, field and store; the secret's value never appears in any message.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

from . import assembly
from .components.metadata import REDACTED as REDACTED  # re-exported: the text shown for a secret
from .components.secretstores import SECRET_STORE_TYPES, SecretError, SecretNotFoundError, SecretStore
from .resources import Component, Resources

log = logging.getLogger("outrig.secrets")


def refs_of(component: Component) -> list[int]:
    """The indexes of the component's metadata items that are secretKeyRefs."""
    return [i for i, item in enumerate(component.resource.spec.metadata) if item.secretKeyRef is not None]


def resolve(resources: Resources, stores: Mapping[str, SecretStore]) -> int:
    """Replace every secretKeyRef's value with the secret's; the number of refs resolved."""
    resolved = 0
    for component in resources.components:
        indexes = refs_of(component)
        if not indexes:
            continue
        if component.type in SECRET_STORE_TYPES:
            raise component.document.error(
                ("spec", "metadata", indexes[0], "secretKeyRef"),
                f"secret store {component.name!r} cannot read its own metadata from a secret store",
                hint="give the value directly (secret stores are built before secretKeyRefs are resolved)",
            )
        store = _store_of(component, stores)
        for index in indexes:
            _resolve_item(component, index, store)
            resolved += 1
    return resolved


def _store_of(component: Component, stores: Mapping[str, SecretStore]) -> tuple[str, SecretStore]:
    configured = ", ".join(sorted(stores)) or "none"
    auth = component.resource.auth
    if auth is None:
        raise component.document.error(
            ("spec", "metadata", refs_of(component)[0], "secretKeyRef"),
            f"component {component.name!r} uses a secretKeyRef but names no secret store",
            hint="add `auth: {secretStore: <name>}` to the component "
            f"(secret stores configured: {configured})",
        )
    store = stores.get(auth.secretStore)
    if store is None:
        raise component.document.error(
            ("auth", "secretStore"),
            f"component {component.name!r}: no secret store with this name",
            auth.secretStore,
            hint=f"add a Component of type secretstores.local.file or secretstores.local.env named "
            f"{auth.secretStore!r} (secret stores configured: {configured})",
        )
    return auth.secretStore, store


def _resolve_item(component: Component, index: int, named: tuple[str, SecretStore]) -> None:
    store_name, store = named
    item = component.resource.spec.metadata[index]
    ref = item.secretKeyRef
    assert ref is not None
    key = ref.key or ref.name
    where = f"component {component.name!r}, metadata {item.name!r}"
    path: tuple[str | int, ...] = ("spec", "metadata", index, "secretKeyRef")
    try:
        secret = store.get(ref.name, {})
    except SecretNotFoundError:
        raise component.document.error(
            (*path, "name"),
            f"{where}: secret {ref.name!r} not found in secret store {store_name!r}",
            ref.name,
            hint="check the secret's name, or add it to the store",
        ) from None
    except SecretError as exc:
        raise component.document.error(
            (*path, "name"),
            f"{where}: cannot read secret {ref.name!r} from secret store {store_name!r}: {exc}",
        ) from None
    if key not in secret:
        keys = ", ".join(sorted(secret)) or "none"
        raise component.document.error(
            (*path, "key") if ref.key else path,
            f"{where}: secret {ref.name!r} of secret store {store_name!r} has no key {key!r}",
            key,
            hint=f"its keys: {keys}",
        )
    item.value = secret[key]


def open_and_resolve(resources: Resources) -> dict[str, tuple[str, SecretStore]]:
    """Open the secret stores, then resolve every secretKeyRef from them (before any other
    component is built); the stores, name -> (type, store)."""
    opened = open_stores(resources)
    count = resolve(resources, {name: store for name, (_, store) in opened.items()})
    if count:
        log.info("resolved %d secretKeyRef(s) in component metadata", count)
    return opened


def open_stores(resources: Resources) -> dict[str, tuple[str, SecretStore]]:
    """The configured secret stores (name -> (type, store)), built before anything else so
    that other components' secretKeyRefs can be resolved from them."""
    opened: dict[str, tuple[str, SecretStore]] = {}
    for component in resources.components:
        if component.type not in SECRET_STORE_TYPES:
            continue
        spec = assembly.ComponentSpec(
            component.name, component.type, component.resource.settings(), component
        )
        create = functools.partial(SECRET_STORE_TYPES[component.type].create, spec.name, spec.settings)
        opened[spec.name] = (spec.type, assembly.build(spec, "secret store", create, (SecretError,)))
    return opened

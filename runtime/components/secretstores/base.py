"""The secret store interface: named secrets, each a map of keys to string values.

Reads are synchronous: the stores here are local (a file read once, the environment), and
`secretKeyRef`s in other components' metadata are resolved while the sidecar is being
built, before any event loop work can run. A networked store (Vault, a cloud manager)
would answer from a cache it fills at start.

Errors never carry a secret's value: they name the store, the secret and the key only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

Secret = dict[str, str]
"""One secret: its keys and values (a single-valued store answers `{name: value}`)."""


class SecretError(Exception):
    """A store cannot answer (unreadable, unreachable)."""


class SecretNotFoundError(SecretError):
    """The store has no secret of that name."""


class SecretStore(Protocol):
    features: frozenset[str]
    """Dapr's feature names: MULTIPLE_KEY_VALUES_PER_SECRET."""

    def get(self, name: str, metadata: Mapping[str, str]) -> Secret:
        """The secret `name`; `SecretNotFoundError` when there is none."""
        ...

    def bulk_get(self, metadata: Mapping[str, str]) -> dict[str, Secret]:
        """Every secret of the store, by name."""
        ...

    def close(self) -> None: ...


class SecretStoreType(Protocol):
    """A store class, built from its component's metadata (`MetadataError` on a bad field)."""

    def create(self, name: str, metadata: Mapping[str, Any]) -> SecretStore: ...

"""`secretstores.local.file`: secrets from a JSON file, read once at start, as Dapr's.

Nested objects and arrays are flattened into names joined by `nestedSeparator` (default
`:`): `{"db": {"password": "x"}}` is the secret `db:password`. With `multiValued: true`,
each top-level object is one secret whose keys are its flattened members
(`{"db": {"user": .., "password": ..}}` is the secret `db` with keys `user` and
`password`). Values that are not strings are written as JSON writes them (`true`, `5`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..metadata import MetadataError, flag, text
from .base import Secret, SecretNotFoundError

MULTIPLE_KEY_VALUES = "MULTIPLE_KEY_VALUES_PER_SECRET"


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def flatten(value: Any, separator: str, prefix: str = "") -> dict[str, str]:
    """`{"a": {"b": 1}, "c": [2]}` -> `{"a:b": "1", "c:0": "2"}` (with separator ":")."""
    items: list[tuple[str, Any]]
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return {prefix: _scalar(value)}
    flat: dict[str, str] = {}
    for key, member in items:
        flat.update(flatten(member, separator, f"{prefix}{separator}{key}" if prefix else key))
    return flat


class FileSecretStore:
    def __init__(self, secrets: Mapping[str, Secret], multi_valued: bool) -> None:
        self.secrets = dict(secrets)
        self.features = frozenset({MULTIPLE_KEY_VALUES}) if multi_valued else frozenset()

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any]) -> FileSecretStore:
        path = Path(text(metadata, "secretsFile", required_hint="the path of a JSON file of secrets"))
        separator = text(metadata, "nestedSeparator", ":")
        multi_valued = flag(metadata, "multiValued")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise MetadataError(
                "secretsFile", str(path), f"cannot read the secrets file: {exc.strerror}", None
            ) from None
        except ValueError as exc:
            # The decoder's message names line and column only, never the text around it.
            raise MetadataError(
                "secretsFile", str(path), f"the secrets file is not valid JSON ({exc})", None
            ) from None
        if not isinstance(document, dict):
            raise MetadataError(
                "secretsFile", str(path), "the secrets file must hold a JSON object", '{"name": "value"}'
            )
        return cls(load(document, separator, multi_valued), multi_valued)

    def get(self, name: str, metadata: Mapping[str, str]) -> Secret:
        secret = self.secrets.get(name)
        if secret is None:
            raise SecretNotFoundError(f"secret {name} not found")
        return dict(secret)

    def bulk_get(self, metadata: Mapping[str, str]) -> dict[str, Secret]:
        return {name: dict(secret) for name, secret in self.secrets.items()}

    def close(self) -> None:
        pass


def load(document: Mapping[str, Any], separator: str, multi_valued: bool) -> dict[str, Secret]:
    """The secrets of a parsed secrets file, by name."""
    if not multi_valued:
        return {name: {name: value} for name, value in flatten(dict(document), separator).items()}
    secrets: dict[str, Secret] = {}
    for name, value in document.items():
        if isinstance(value, dict):
            secrets[name] = flatten(value, separator)
        else:
            secrets.update({k: {k: v} for k, v in flatten(value, separator, name).items()})
    return secrets

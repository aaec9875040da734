"""`secretstores.local.env`: the sidecar's environment variables as secrets, as Dapr's.

`prefix` (optional) is put before the name when reading and stripped from names in bulk
reads. `APP_API_TOKEN` and `DAPR_*` are never handed out (Dapr's rule). Where Dapr is weak:
a variable that is not set is "not found" (Dapr answers it with an empty value, so a typo
in a name reads as an empty password).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..metadata import text
from .base import Secret, SecretNotFoundError


def _allowed(name: str) -> bool:
    upper = name.upper()
    return upper != "APP_API_TOKEN" and not upper.startswith("DAPR_")


class EnvSecretStore:
    features: frozenset[str] = frozenset()

    def __init__(self, prefix: str = "", environ: Mapping[str, str] | None = None) -> None:
        self.prefix = prefix
        self.environ: Mapping[str, str] = os.environ if environ is None else environ

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any]) -> EnvSecretStore:
        return cls(text(metadata, "prefix"))

    def get(self, name: str, metadata: Mapping[str, str]) -> Secret:
        variable = self.prefix + name
        value = self.environ.get(variable) if _allowed(variable) else None
        if value is None:
            raise SecretNotFoundError(f"secret {name} not found (no environment variable {variable})")
        return {name: value}

    def bulk_get(self, metadata: Mapping[str, str]) -> dict[str, Secret]:
        found: dict[str, Secret] = {}
        for variable, value in self.environ.items():
            if not variable.startswith(self.prefix) or len(variable) <= len(self.prefix):
                continue
            if _allowed(variable):
                name = variable[len(self.prefix) :]
                found[name] = {name: value}
        return found

    def close(self) -> None:
        pass

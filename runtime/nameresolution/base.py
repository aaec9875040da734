"""The name-resolution seam: app id -> address of a sidecar serving it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int


class NameResolver(Protocol):
    def register(self, app_id: str, address: Address) -> None:
        """Announce this sidecar's internal address for `app_id`."""

    def unregister(self) -> None:
        """Withdraw what `register` announced."""

    def resolve(self, app_id: str) -> Address | None:
        """One live address for `app_id` (spread over instances), or None."""

    def forget(self, app_id: str) -> None:
        """Drop anything cached for `app_id`, e.g. after its address refused a connection."""

"""Dapr's `nameformat` resolver: an app id's sidecar is found at a name built from a
format, e.g. `{appid}` in Docker Compose (each service's DNS name) or
`{appid}-dapr.default.svc.cluster.local` in Kubernetes.

The format gives the host, and may give the port (`{appid}:50002`, an outrig extension);
without one, every sidecar is taken to use the same `--internal-port` as this one (Dapr's
convention of one internal port, 50002, for all). Nothing is registered: DNS does it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Address

PLACEHOLDER = "{appid}"


class NameFormatError(ValueError):
    """A nameformat configuration that cannot work; the message says how to fix it."""


class NameFormatResolver:
    def __init__(self, format_: str, default_port: int) -> None:
        if PLACEHOLDER not in format_:
            raise NameFormatError(f"format must contain {PLACEHOLDER}, e.g. '{PLACEHOLDER}:50002'")
        host, sep, port = format_.rpartition(":")
        if sep and port.isdigit():
            self.format, self.port = host, int(port)
        else:
            if not default_port:
                raise NameFormatError(
                    "give the port in the format ('{appid}:50002') or a fixed --internal-port"
                )
            self.format, self.port = format_, default_port

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any], default_port: int) -> NameFormatResolver:
        value = configuration.get("format")
        if not isinstance(value, str) or not value:
            raise NameFormatError("configuration.format is required, e.g. '{appid}:50002'")
        return cls(value, default_port)

    def register(self, app_id: str, address: Address) -> None:
        """Nothing to do: the name is found through DNS."""

    def unregister(self) -> None:
        """Nothing to do: the name is found through DNS."""

    def resolve(self, app_id: str) -> Address | None:
        return Address(self.format.replace(PLACEHOLDER, app_id), self.port)

    def forget(self, app_id: str) -> None:
        """Nothing cached."""

"""The sidecar's settings, as given on the command line (Dapr CLI flag names)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import envvars

APP_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def outrig_home() -> Path:
    return Path(os.environ.get(envvars.OUTRIG_HOME) or Path.home() / ".outrig")


@dataclass(frozen=True)
class SidecarOptions:
    app_id: str
    app_port: int | None = None
    app_protocol: str = "http"
    app_host: str = "127.0.0.1"
    http_port: int = 3500
    grpc_port: int = 50001
    internal_port: int = 0
    """Sidecar-to-sidecar port; 0 picks a free one (peers find it through name resolution)."""
    metrics_port: int = 9090
    metrics_port_given: bool = True
    """False when `--metrics-port` was left out: then a taken 9090 means "any free port"
    (several sidecars on one machine), where a port asked for must be had."""
    listen_address: str = "127.0.0.1"
    resources_paths: tuple[Path, ...] = ()
    config_path: Path | None = None
    log_level: str = "info"
    max_request_mb: int = 4
    """`--dapr-http-max-request-size`: the largest request body the API reads whole, in MB
    (Dapr's default 4); invocation bodies stream through and are not limited by it."""
    home: Path = field(default_factory=outrig_home)

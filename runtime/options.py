"""The sidecar's settings, as given on the command line (Dapr CLI flag names)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import envvars

APP_ID_PATTERN = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
"""No empty label (`a..b`): with mTLS the app id is the TLS server name of calls to it."""


def _env_token(name: str) -> str | None:
    return os.environ.get(name) or None


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
    grpc_port_given: bool = True
    """False when `--dapr-grpc-port` was left out: then a taken 50001 means "any free port"
    (as the Dapr CLI picks one), where a port asked for must be had."""
    listen_address: str = "127.0.0.1"
    resources_paths: tuple[Path, ...] = ()
    config_path: Path | None = None
    log_level: str = "info"
    max_request_mb: int = 4
    """`--dapr-http-max-request-size`: the largest request body the API reads whole, in MB
    (Dapr's default 4); invocation bodies stream through and are not limited by it."""
    home: Path = field(default_factory=outrig_home)
    ca_dir: Path | None = None
    """`--ca-dir`: the CA folder workload certificates are issued from when mTLS is on."""
    api_token: str | None = field(default_factory=lambda: _env_token(envvars.DAPR_API_TOKEN), repr=False)
    """`DAPR_API_TOKEN`, read once: every Dapr API call (HTTP and gRPC) must carry it."""
    app_api_token: str | None = field(default_factory=lambda: _env_token(envvars.APP_API_TOKEN), repr=False)
    """`APP_API_TOKEN`, read once: sent to the app as `dapr-api-token` on every call into it."""

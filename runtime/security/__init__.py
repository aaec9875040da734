"""outrig's certificate authority, workload identities and mTLS between sidecars.

`settings.workload_identity` (imported on its own: it needs the sidecar's options and
resources) turns `spec.mtls` into the identity the sidecar serves and calls with.
`Authority`, `CaError` and `WorkloadIdentity` are loaded on first use: they need
`cryptography` (~10 MB resident), which a sidecar without mTLS never loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .peers import PEER_IDENTITY, PeerIdentityError, SpiffeConnector, verified_protocol
from .spiffe import SpiffeError, SpiffeId
from .tls import PeerVerifier, client_context, server_context

if TYPE_CHECKING:
    from .ca import Authority, CaError
    from .workload import WorkloadIdentity

_LAZY = {"Authority": ".ca", "CaError": ".ca", "WorkloadIdentity": ".workload"}

__all__ = [
    "PEER_IDENTITY",
    "Authority",
    "CaError",
    "PeerIdentityError",
    "PeerVerifier",
    "SpiffeConnector",
    "SpiffeError",
    "SpiffeId",
    "WorkloadIdentity",
    "client_context",
    "server_context",
    "verified_protocol",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

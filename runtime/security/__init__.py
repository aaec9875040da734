"""outrig's certificate authority, workload identities and mTLS between sidecars.

`settings.workload_identity` (imported on its own: it needs the sidecar's options and
resources) turns `spec.mtls` into the identity the sidecar serves and calls with.
"""

from .ca import Authority, CaError
from .peers import PEER_IDENTITY, PeerIdentityError, SpiffeConnector, verified_protocol
from .spiffe import SpiffeError, SpiffeId
from .tls import PeerVerifier, client_context, server_context
from .workload import WorkloadIdentity

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

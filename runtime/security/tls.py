"""TLS contexts for sidecar-to-sidecar traffic, and the checks OpenSSL does not make.

OpenSSL verifies the chain (up to the trust domain's root) and the validity dates at a full
handshake; outrig checks the leaf's dates again on every connection (a resumed session is not
re-verified by OpenSSL; session tickets are off anyway), that the leaf is an X.509-SVID leaf
(CA:FALSE, digitalSignature), and the SPIFFE ID itself (`check_hostname` is off: peers are
named by SPIFFE ID, not by DNS name): the server accepts only peers of its trust domain, the
client only the app id it meant to call.

The server asks for a client certificate without requiring one (`CERT_OPTIONAL`): a
presented certificate is still verified by OpenSSL (a bad one fails the handshake), and a
client that sends none completes the handshake and is refused, by name and address in the
log, by the peer protocol. With `CERT_REQUIRED`, TLS 1.3 clients without a certificate
finish their side of the handshake anyway and fail only on their first read, and the
server never logs who it refused.

Both ends speak TLS 1.3 only (all outrig sidecars do; no downgrade to negotiate) with
renegotiation off. The server issues no session tickets: a resumed session would carry the
client's authentication past its certificate's end, and sidecar connections are pooled, so
resumption saves little.
"""

from __future__ import annotations

import datetime as dt
import ssl

from .spiffe import PeerCertificate, SpiffeError, SpiffeId, peer_certificate

ALPN = ["http/1.1"]


def _harden(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.options |= ssl.OP_NO_RENEGOTIATION


def server_context(root_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(context)
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=root_pem.decode())
    context.set_alpn_protocols(ALPN)
    return context


def client_context(root_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(context)
    context.check_hostname = False  # the SPIFFE ID is checked instead (PeerVerifier)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=root_pem.decode())
    context.set_alpn_protocols(ALPN)
    return context


class PeerVerifier:
    """The SPIFFE ID of the other end of a verified TLS connection, if it is one we accept.

    `max_connection_age`: seconds after which either end closes a connection once its current
    request is done (about one renewal interval), so no connection outlives by much the
    certificates it was authenticated with; None: no limit."""

    def __init__(self, trust_domain: str, max_connection_age: float | None = None) -> None:
        self.trust_domain = trust_domain
        self.max_connection_age = max_connection_age

    def verify(self, ssl_object: ssl.SSLObject | None, app_id: str | None = None) -> SpiffeId:
        """The peer's identity; a SpiffeError says why it is refused. `app_id`: the app the
        client meant to reach (the client side checks it; the server accepts any app)."""
        return self.peer(ssl_object, app_id).identity

    def peer(self, ssl_object: ssl.SSLObject | None, app_id: str | None = None) -> PeerCertificate:
        """As `verify`, with the peer certificate's validity (connections end by its `not_after`)."""
        if ssl_object is None:
            raise SpiffeError("the connection is not TLS")
        der = ssl_object.getpeercert(binary_form=True)
        if der is None:
            raise SpiffeError(
                "the peer presented no certificate (mTLS is on: a workload certificate is required)"
            )
        peer = peer_certificate(der)
        identity = peer.identity
        moment = dt.datetime.now(dt.UTC)
        if moment < peer.not_before:
            raise SpiffeError(
                f"the certificate of {identity} is not valid before {peer.not_before.isoformat()}"
            )
        if moment >= peer.not_after:
            raise SpiffeError(f"the certificate of {identity} expired at {peer.not_after.isoformat()}")
        if identity.trust_domain != self.trust_domain:
            raise SpiffeError(
                f"the peer is {identity}, of trust domain {identity.trust_domain!r}; "
                f"this sidecar accepts {self.trust_domain!r} only"
            )
        if app_id is not None and identity.app_id != app_id:
            raise SpiffeError(f"the peer is {identity}, not the sidecar of app {app_id!r}")
        return peer

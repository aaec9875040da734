"""SPIFFE IDs of outrig workloads: `spiffe://<trust-domain>/ns/<namespace>/<app-id>` (Dapr's shape).

A workload certificate carries exactly one URI SAN, its SPIFFE ID (the X.509-SVID rule);
`peer_certificate` reads it, and what else a peer's leaf must show (not a CA, allowed to
sign, its validity dates), from the DER bytes, cached, since a peer presents the same
certificate on every connection until it rotates.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

TRUST_DOMAIN_PATTERN = re.compile(r"^[a-z0-9._-]{1,255}$")
"""SPIFFE trust domains: lowercase letters, digits, dots, dashes and underscores."""
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


class SpiffeError(ValueError):
    """A SPIFFE ID or a certificate's identity that outrig does not accept; says why."""


@dataclass(frozen=True, slots=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    app_id: str

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/{self.app_id}"

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        prefix = "spiffe://"
        if not uri.startswith(prefix):
            raise SpiffeError(
                f"{uri!r} is not a SPIFFE ID (expected spiffe://<trust-domain>/ns/<ns>/<app-id>)"
            )
        trust_domain, _, path = uri[len(prefix) :].partition("/")
        parts = path.split("/")
        if len(parts) != 3 or parts[0] != "ns":
            raise SpiffeError(
                f"{uri!r} is not an outrig workload ID (expected spiffe://<td>/ns/<ns>/<app-id>)"
            )
        check_trust_domain(trust_domain)
        for part in parts[1:]:
            if part in (".", ".."):
                raise SpiffeError(f"{uri!r}: path segment {part!r} is a dot segment, which SPIFFE forbids")
            if not _SEGMENT.match(part):
                raise SpiffeError(f"{uri!r}: path segment {part!r} has characters SPIFFE does not allow")
        return cls(trust_domain, parts[1], parts[2])


def check_trust_domain(name: str) -> str:
    if not TRUST_DOMAIN_PATTERN.match(name):
        raise SpiffeError(
            f"{name!r} is not a valid trust domain: use lowercase letters, digits, '.', '-' or '_'"
        )
    return name


def uri_sans(certificate: x509.Certificate) -> list[str]:
    from cryptography import x509

    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return extension.value.get_values_for_type(x509.UniformResourceIdentifier)


def identity_of(certificate: x509.Certificate) -> SpiffeId:
    """The SPIFFE ID of a workload certificate: its one and only URI SAN."""
    uris = uri_sans(certificate)
    if len(uris) != 1:
        raise SpiffeError(
            f"a workload certificate has exactly one URI SAN (its SPIFFE ID); this one has {len(uris)}"
        )
    return SpiffeId.parse(uris[0])


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """What a connection's checks need from a peer's leaf certificate, parsed once."""

    identity: SpiffeId
    not_before: dt.datetime
    not_after: dt.datetime


def check_leaf(certificate: x509.Certificate) -> None:
    """The X.509-SVID rules for a leaf: not a CA, and allowed to sign (the TLS handshake)."""
    from cryptography import x509

    try:
        is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        raise SpiffeError(
            "the peer's certificate has no BasicConstraints (an X.509-SVID leaf needs CA:FALSE)"
        ) from None
    if is_ca:
        raise SpiffeError("the peer's certificate is a CA certificate (an X.509-SVID leaf has CA:FALSE)")
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise SpiffeError(
            "the peer's certificate has no KeyUsage (an X.509-SVID leaf needs digitalSignature)"
        ) from None
    if not usage.digital_signature or usage.key_cert_sign or usage.crl_sign:
        raise SpiffeError(
            "the peer's certificate KeyUsage is not an X.509-SVID leaf's (digitalSignature, no certificate "
            "or CRL signing)"
        )


@functools.lru_cache(maxsize=256)
def peer_certificate(der: bytes) -> PeerCertificate:
    """The checked identity and validity of a DER leaf certificate (as
    `SSLObject.getpeercert(True)` gives it); a SpiffeError says why it is not accepted."""
    from cryptography import x509  # ~10 MB resident: loaded only once mTLS is in use

    certificate = x509.load_der_x509_certificate(der)
    check_leaf(certificate)
    return PeerCertificate(
        identity_of(certificate), certificate.not_valid_before_utc, certificate.not_valid_after_utc
    )


def of_certificate(der: bytes) -> SpiffeId:
    """The SPIFFE ID in a DER leaf certificate."""
    return peer_certificate(der).identity

"""outrig's certificate authority: a trust domain's root, an issuer under it, workload certificates.

A CA folder holds `root.crt` (the trust anchor every sidecar verifies peers against),
`issuer.crt` and `issuer.key` (the intermediate that signs workload certificates) and,
when `outrig ca init` created the root, `root.key`. Keys are ECDSA P-256, written 0600.
The root and issuer carry the trust domain's own SPIFFE ID (`spiffe://<td>`) as URI SAN,
so a sidecar learns its trust domain from the issuer it is given.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .keyfiles import write_private, write_public
from .spiffe import SpiffeError, SpiffeId, check_trust_domain, uri_sans

ROOT_CERT, ROOT_KEY = "root.crt", "root.key"
ISSUER_CERT, ISSUER_KEY = "issuer.crt", "issuer.key"
DEFAULT_ROOT_TTL = dt.timedelta(days=3650)
DEFAULT_ISSUER_TTL = dt.timedelta(days=365)

PrivateKey = ec.EllipticCurvePrivateKey


class CaError(Exception):
    """A CA folder or file that cannot be used; the message names the file and the fix."""


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ca_certificate(
    subject: str, trust_domain: str, key: PrivateKey, issuer: x509.Certificate | None,
    issuer_key: PrivateKey, ttl: dt.timedelta, path_length: int,
) -> x509.Certificate:  # fmt: skip
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
                      x509.NameAttribute(NameOID.COMMON_NAME, subject)])  # fmt: skip
    start = now() - dt.timedelta(minutes=5)
    not_after = start + ttl
    if issuer is not None:
        not_after = min(not_after, issuer.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class Authority:
    """A trust domain's root certificate and the issuer that signs its workload certificates."""

    trust_domain: str
    root: x509.Certificate
    issuer: x509.Certificate
    issuer_key: PrivateKey
    root_key: PrivateKey | None = None

    @classmethod
    def create(
        cls,
        trust_domain: str,
        root_ttl: dt.timedelta = DEFAULT_ROOT_TTL,
        issuer_ttl: dt.timedelta = DEFAULT_ISSUER_TTL,
        root: tuple[x509.Certificate, PrivateKey] | None = None,
    ) -> Authority:
        """A new issuer under a new root (or under `root`, an existing one)."""
        check_trust_domain(trust_domain)
        if root is None:
            root_key = new_key()
            root_cert = _ca_certificate(f"outrig root CA ({trust_domain})", trust_domain, root_key, None,
                                        root_key, root_ttl, 1)  # fmt: skip
        else:
            root_cert, root_key = root
        issuer_key = new_key()
        issuer = _ca_certificate(f"outrig issuer ({trust_domain})", trust_domain, issuer_key, root_cert,
                                 root_key, issuer_ttl, 0)  # fmt: skip
        return cls(trust_domain, root_cert, issuer, issuer_key, root_key)

    def save(self, folder: Path) -> list[Path]:
        """Write the CA files into `folder` (created 0700 if missing); existing files are kept
        and reported, never overwritten."""
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        files = [(ROOT_CERT, cert_pem(self.root), False), (ISSUER_CERT, cert_pem(self.issuer), False),
                 (ISSUER_KEY, key_pem(self.issuer_key), True)]  # fmt: skip
        if self.root_key is not None:
            files.append((ROOT_KEY, key_pem(self.root_key), True))
        taken = [name for name, _, _ in files if (folder / name).exists()]
        if taken:
            raise CaError(f"{folder} already holds {', '.join(taken)}; choose another --out folder")
        written = []
        for name, data, private in files:
            (write_private if private else write_public)(folder / name, data)
            written.append(folder / name)
        return written

    @classmethod
    def load(cls, folder: Path) -> Authority:
        """The CA in `folder` (root.crt, issuer.crt, issuer.key), checked to fit together."""
        if not folder.is_dir():
            hint = f"create one with `outrig ca init --trust-domain <td> --out {folder}`"
            raise CaError(f"no CA folder at {folder}; {hint}")
        root = read_certificate(folder / ROOT_CERT)
        issuer = read_certificate(folder / ISSUER_CERT)
        issuer_key = read_key(folder / ISSUER_KEY)
        if issuer_key.public_key().public_numbers() != _ec_public(issuer, folder / ISSUER_CERT):
            raise CaError(f"{folder / ISSUER_KEY} is not the key of {folder / ISSUER_CERT}")
        try:
            issuer.verify_directly_issued_by(root)
        except (InvalidSignature, ValueError, TypeError) as exc:
            raise CaError(f"{folder / ISSUER_CERT} is not signed by {folder / ROOT_CERT}: {exc}") from None
        if issuer.not_valid_after_utc <= now():
            ended = f"{issuer.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
            raise CaError(
                f"{folder / ISSUER_CERT} expired on {ended}; make a new issuer under the same root with "
                "`outrig ca init --root-cert root.crt --root-key root.key --out NEWDIR`"
            )
        trust_domain = trust_domain_of(issuer) or trust_domain_of(root)
        if trust_domain is None:
            raise CaError(f"{folder / ISSUER_CERT} names no trust domain (a spiffe://<td> URI SAN)")
        return cls(trust_domain, root, issuer, issuer_key)

    def issue(
        self, identity: SpiffeId, public_key: ec.EllipticCurvePublicKey, ttl: dt.timedelta,
        skew: dt.timedelta = dt.timedelta(0), start: dt.datetime | None = None,
    ) -> x509.Certificate:  # fmt: skip
        """A workload certificate for `identity`: its SPIFFE ID the only URI SAN, valid from
        `skew` ago (clocks of peers differ) for `ttl`, never beyond the issuer's own end."""
        begin = (start or now()) - skew
        not_after = min(begin + skew + ttl, self.issuer.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.app_id)]))
            .issuer_name(self.issuer.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(begin)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,  # ECDSA keys sign; they never encipher keys (RSA's use)
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(identity))]), critical=True
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.issuer_key.public_key()),
                critical=False,
            )
        )
        return builder.sign(self.issuer_key, hashes.SHA256())


def _ec_public(certificate: x509.Certificate, path: Path) -> ec.EllipticCurvePublicNumbers:
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CaError(f"{path}: outrig issuers use ECDSA keys, this one is {type(key).__name__}")
    return key.public_numbers()


def trust_domain_of(certificate: x509.Certificate) -> str | None:
    for uri in uri_sans(certificate):
        if uri.startswith("spiffe://") and "/" not in uri[len("spiffe://") :]:
            try:
                return check_trust_domain(uri[len("spiffe://") :])
            except SpiffeError:
                return None
    return None


def read_certificate(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CaError(f"cannot read certificate {path}: {exc.strerror}") from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        try:
            return x509.load_der_x509_certificate(data)
        except ValueError:
            raise CaError(f"{path} is not a PEM or DER X.509 certificate") from None


def read_key(path: Path) -> PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CaError(f"cannot read private key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CaError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaError(f"{path}: outrig uses ECDSA keys, this one is {type(key).__name__}")
    return key

"""`outrig ca`: create a trust domain's CA, issue a workload certificate from it, inspect one.

outrig ca init --trust-domain public --out ~/.outrig/ca
outrig ca init --trust-domain public --root-cert root.crt --root-key root.key --out new-issuer
outrig ca issue --ca ~/.outrig/ca --app-id orders --out orders/   (for tools such as curl)
outrig ca inspect ~/.outrig/ca/issuer.crt

`init` and `issue` write into a staging folder next to `--out` and rename it into place, so
an interrupted command leaves no half-made CA (a root without its issuer, a certificate
without its key).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from .ca import (
    Authority,
    CaError,
    cert_pem,
    key_pem,
    new_key,
    now,
    read_certificate,
    read_key,
    trust_domain_of,
)
from .keyfiles import write_private, write_public
from .spiffe import SpiffeError, SpiffeId, uri_sans


def run(args: argparse.Namespace) -> int:
    try:
        if args.ca_command == "init":
            return _init(args)
        if args.ca_command == "issue":
            return _issue(args)
        return _inspect(args.file)
    except (CaError, SpiffeError) as exc:
        print(f"outrig ca {args.ca_command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"outrig ca {args.ca_command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


def _write_atomically(out: Path, fill: Callable[[Path], None]) -> None:
    """Run `fill` on a new 0700 staging folder beside `out`, then rename it to `out` (which
    must not exist, or be an empty folder)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CaError(f"{out} already exists and is not an empty folder; choose another --out folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        fill(staging)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _init(args: argparse.Namespace) -> int:
    root = None
    if (args.root_cert is None) != (args.root_key is None):
        raise CaError("give both --root-cert and --root-key (or neither, for a new root)")
    if args.root_cert is not None:
        root = (read_certificate(args.root_cert), read_key(args.root_key))
        found = trust_domain_of(root[0])
        if found is not None and found != args.trust_domain:
            raise CaError(
                f"{args.root_cert} is the root of trust domain {found!r}, not {args.trust_domain!r}"
            )
    authority = Authority.create(args.trust_domain, args.root_ttl, args.issuer_ttl, root)
    if root is not None:
        authority = Authority(authority.trust_domain, authority.root, authority.issuer, authority.issuer_key)
    names: list[str] = []
    _write_atomically(args.out, lambda staging: names.extend(p.name for p in authority.save(staging)))
    for name in names:
        print(args.out / name)
    print(
        f"trust domain {args.trust_domain!r}; private keys are 0600. Point sidecars at it with --ca-dir "
        f"{args.out} (or OUTRIG_CA_DIR) and turn on spec.mtls.enabled in their Configuration."
    )
    return 0


def _issue(args: argparse.Namespace) -> int:
    authority = Authority.load(args.ca)
    identity = SpiffeId.parse(str(SpiffeId(authority.trust_domain, args.namespace, args.app_id)))
    key = new_key()
    certificate = authority.issue(identity, key.public_key(), args.ttl)

    def fill(staging: Path) -> None:
        write_public(staging / "workload.crt", cert_pem(certificate) + cert_pem(authority.issuer))
        write_private(staging / "workload.key", key_pem(key))

    _write_atomically(args.out, fill)
    print(args.out / "workload.crt", args.out / "workload.key", sep="\n")
    print(f"{identity}, expires {certificate.not_valid_after_utc.isoformat()}")
    return 0


def describe(certificate: x509.Certificate) -> list[tuple[str, str]]:
    key = certificate.public_key()
    key_text = f"ECDSA {key.curve.name}" if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
    try:
        is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    left = certificate.not_valid_after_utc - now()
    state = f"expires in {left}" if left.total_seconds() > 0 else f"EXPIRED {-left} ago"
    return [
        ("subject", certificate.subject.rfc4514_string()),
        ("issuer", certificate.issuer.rfc4514_string()),
        ("serial", f"{certificate.serial_number:x}"),
        ("SPIFFE ID", ", ".join(uri_sans(certificate)) or "(none)"),
        ("CA", "yes" if is_ca else "no"),
        ("key", key_text),
        ("not before", certificate.not_valid_before_utc.isoformat()),
        ("not after", f"{certificate.not_valid_after_utc.isoformat()} ({state})"),
    ]


def _inspect(path: Path) -> int:
    for name, value in describe(read_certificate(path)):
        print(f"{name:12}{value}")
    return 0

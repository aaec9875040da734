"""The CA: roots, issuers and workload certificates; what a CA folder must hold."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509

from outrig.runtime.security import Authority, CaError, SpiffeError, SpiffeId
from outrig.runtime.security.ca import new_key, now
from outrig.runtime.security.spiffe import identity_of, of_certificate, peer_certificate


def test_a_saved_ca_loads_back_with_its_trust_domain_and_keys_0600(tmp_path: Path) -> None:
    created = Authority.create("example.org")
    written = created.save(tmp_path / "ca")
    assert sorted(p.name for p in written) == ["issuer.crt", "issuer.key", "root.crt", "root.key"]
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.suffix == ".key" else 0o644), path
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    loaded = Authority.load(tmp_path / "ca")
    assert loaded.trust_domain == "example.org"
    assert loaded.issuer.serial_number == created.issuer.serial_number
    with pytest.raises(CaError, match=r"already holds root.crt, issuer.crt"):
        created.save(tmp_path / "ca")


def test_workload_certificates_carry_one_spiffe_id_and_the_requested_lifetime() -> None:
    authority = Authority.create("public")
    identity = SpiffeId("public", "default", "orders")
    start = now()
    cert = authority.issue(
        identity, new_key().public_key(), dt.timedelta(seconds=20), dt.timedelta(minutes=1), start
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://public/ns/default/orders"]
    assert len(list(san)) == 1
    assert identity_of(cert) == identity
    assert cert.not_valid_after_utc - start.replace(microsecond=0) <= dt.timedelta(seconds=21)
    assert start - cert.not_valid_before_utc >= dt.timedelta(seconds=59)  # allowed clock skew
    cert.verify_directly_issued_by(authority.issuer)
    from cryptography.hazmat.primitives.serialization import Encoding

    assert of_certificate(cert.public_bytes(Encoding.DER)) == identity
    # Never beyond the issuer's own end.
    long = authority.issue(identity, new_key().public_key(), dt.timedelta(days=10000))
    assert long.not_valid_after_utc == authority.issuer.not_valid_after_utc


def test_an_issuer_under_an_existing_root(tmp_path: Path) -> None:
    first = Authority.create("public")
    second = Authority.create("public", root=(first.root, first.root_key))  # type: ignore[arg-type]
    second.issuer.verify_directly_issued_by(first.root)


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("https://public/ns/default/a", "not a SPIFFE ID"),
        ("spiffe://public/default/a", "not an outrig workload ID"),
        ("spiffe://Public/ns/default/a", "not a valid trust domain"),
        ("spiffe://public/ns/de fault/a", "characters SPIFFE does not allow"),
        ("spiffe://public/ns/../a", "dot segment"),
        ("spiffe://public/ns/default/.", "dot segment"),
    ],
)
def test_bad_spiffe_ids_say_why(uri: str, problem: str) -> None:
    with pytest.raises(SpiffeError, match=problem):
        SpiffeId.parse(uri)


def test_a_broken_ca_folder_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CaError, match=r"no CA folder at .*outrig ca init"):
        Authority.load(tmp_path / "missing")
    Authority.create("public").save(tmp_path / "a")
    Authority.create("public").save(tmp_path / "b")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("root.crt", "issuer.crt"):
        (mixed / name).write_bytes((tmp_path / "a" / name).read_bytes())
    (mixed / "issuer.key").write_bytes((tmp_path / "b" / "issuer.key").read_bytes())
    with pytest.raises(CaError, match=r"issuer.key is not the key of .*issuer.crt"):
        Authority.load(mixed)
    (mixed / "issuer.key").write_bytes((tmp_path / "a" / "issuer.key").read_bytes())
    (mixed / "root.crt").write_bytes((tmp_path / "b" / "root.crt").read_bytes())
    with pytest.raises(CaError, match=r"issuer.crt is not signed by .*root.crt"):
        Authority.load(mixed)
    (mixed / "root.crt").write_text("not a certificate")
    with pytest.raises(CaError, match=r"root.crt is not a PEM or DER X.509 certificate"):
        Authority.load(mixed)


def test_workload_leaves_are_x509_svid_leaves_and_other_certificates_are_refused_as_peers() -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    authority = Authority.create("public")
    leaf = authority.issue(SpiffeId("public", "default", "a"), new_key().public_key(), dt.timedelta(hours=1))
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment  # EC keys sign only
    assert peer_certificate(leaf.public_bytes(Encoding.DER)).not_after == leaf.not_valid_after_utc
    # The issuer (a CA certificate) presented as a peer's leaf is refused.
    with pytest.raises(SpiffeError, match="CA certificate"):
        peer_certificate(authority.issuer.public_bytes(Encoding.DER))

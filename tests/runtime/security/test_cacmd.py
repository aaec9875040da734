"""`outrig ca init / issue / inspect`."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from outrig.runtime.cli import main


def test_init_issue_and_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = tmp_path / "ca"
    assert main(["ca", "init", "--trust-domain", "example.org", "--out", str(ca)]) == 0
    assert stat.S_IMODE((ca / "issuer.key").stat().st_mode) == 0o600
    assert (
        main(
            [
                "ca",
                "issue",
                "--ca",
                str(ca),
                "--app-id",
                "orders",
                "--ttl",
                "1h",
                "--out",
                str(tmp_path / "w"),
            ]
        )
        == 0
    )
    assert stat.S_IMODE((tmp_path / "w" / "workload.key").stat().st_mode) == 0o600
    capsys.readouterr()
    assert main(["ca", "inspect", str(tmp_path / "w" / "workload.crt")]) == 0
    shown = capsys.readouterr().out
    assert "spiffe://example.org/ns/default/orders" in shown
    assert "ECDSA secp256r1" in shown and "CA          no" in shown and "expires in 0:59" in shown
    # A new issuer under the same root; the root's key is not copied.
    again = tmp_path / "issuer2"
    args = ["--root-cert", str(ca / "root.crt"), "--root-key", str(ca / "root.key"), "--out", str(again)]
    assert main(["ca", "init", "--trust-domain", "example.org", *args]) == 0
    assert sorted(p.name for p in again.iterdir()) == ["issuer.crt", "issuer.key", "root.crt"]


def test_mistakes_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "issue", "--ca", str(tmp_path / "none"), "--app-id", "a", "--out", str(tmp_path)]) == 1
    assert "no CA folder at" in capsys.readouterr().err
    assert main(["ca", "init", "--trust-domain", "Bad Domain", "--out", str(tmp_path / "x")]) == 1
    assert "not a valid trust domain" in capsys.readouterr().err
    assert main(["ca", "init", "--root-cert", str(tmp_path / "r.crt"), "--out", str(tmp_path / "y")]) == 1
    assert "give both --root-cert and --root-key" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ca", "issue", "--ca", "x", "--app-id", "a", "--ttl", "5", "--out", "y"])
    assert "missing unit" in capsys.readouterr().err


def test_writes_are_all_or_nothing_and_file_system_errors_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("x")
    assert main(["ca", "init", "--out", str(taken)]) == 1
    assert "already exists and is not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["ca", "init", "--out", str(empty)]) == 0  # an empty folder is fine
    assert sorted(p.name for p in empty.iterdir()) == ["issuer.crt", "issuer.key", "root.crt", "root.key"]
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["ca", "init", "--out", str(blocker / "ca")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("outrig ca init: ") and "Traceback" not in err and "a-file" in err
    assert not list(tmp_path.glob(".*"))  # no staging folder left behind

"""The arguments of `outrig ca`, apart from the commands themselves: `outrig run` builds
this parser too, and must not load `cryptography` (~10 MB resident) to do it."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from outrig.middleware.resiliency.durations import parse_duration


def _duration(text: str) -> dt.timedelta:
    try:
        return dt.timedelta(seconds=parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ca = sub.add_parser("ca", help="create and inspect the certificates of outrig's mTLS")
    commands = ca.add_subparsers(dest="ca_command", required=True)
    init = commands.add_parser("init", help="create a root and an issuer for a trust domain")
    init.add_argument(
        "--trust-domain", default="public", help="the trust domain (default: public, as Dapr's)"
    )
    init.add_argument("--out", type=Path, required=True, help="folder to write the CA files into")
    init.add_argument("--root-cert", type=Path, help="an existing root to put the new issuer under")
    init.add_argument("--root-key", type=Path, help="the key of --root-cert")
    init.add_argument("--root-ttl", type=_duration, default=dt.timedelta(days=3650), help="default 87600h")
    init.add_argument("--issuer-ttl", type=_duration, default=dt.timedelta(days=365), help="default 8760h")
    issue = commands.add_parser(
        "issue", help="issue a workload certificate (for tools; sidecars issue their own)"
    )
    issue.add_argument("--ca", type=Path, required=True, help="the CA folder")
    issue.add_argument("--app-id", required=True)
    issue.add_argument("--namespace", default="default")
    issue.add_argument("--ttl", type=_duration, default=dt.timedelta(hours=24))
    issue.add_argument(
        "--out", type=Path, required=True, help="folder for workload.crt (chain) and workload.key"
    )
    inspect = commands.add_parser("inspect", help="show a certificate: subject, SPIFFE ID, validity, serial")
    inspect.add_argument("file", type=Path)

"""Parsing `/v1.0/invoke/{appId}/method/{method}` without a router (the hot path)."""

from __future__ import annotations

from urllib.parse import unquote

from outrig.middleware import CallError

INVOKE_PREFIX = b"/v1.0/invoke/"
_METHOD = b"/method/"


def parse_invoke_path(raw_path: bytes) -> tuple[str, str]:
    """(app id, method) from a raw invoke path (as sent, before percent-decoding, which is
    also what callers test INVOKE_PREFIX against); the method keeps its percent-encoding."""
    rest = raw_path[len(INVOKE_PREFIX) :]
    cut = rest.find(_METHOD)
    if cut <= 0:
        raise CallError(
            "ERR_MALFORMED_REQUEST",
            f"malformed invoke path {raw_path.decode('latin-1')!r}: expected "
            "/v1.0/invoke/{appId}/method/{method}",
            400,
        )
    return unquote(rest[:cut].decode("latin-1")), rest[cut + len(_METHOD) :].decode("latin-1")

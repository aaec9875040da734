"""What a limit is keyed on: the parts of a call named in the `key` setting.

`key` is one kind or several joined by commas (`caller,method`): each call is limited in
the bucket of its values for those kinds. The spec string is the metric label (bounded by
configuration); the values never are.
"""

from __future__ import annotations

from collections.abc import Callable

from .._call import Call, Hop

KeyPart = Callable[[Call], str]

ANONYMOUS = "-"
"""The value of a key part the call does not have (no identity without mTLS, say): such
calls share one bucket."""


def address(call: Call) -> str:
    """The connection's peer address, as Dapr's limiter (tollbooth, `RemoteAddr` first)
    keys on: a header would let any client pick a fresh bucket per request."""
    return str(call.attributes.get("client.address") or ANONYMOUS)


def forwarded_address(call: Call) -> str:
    """Behind a trusted proxy (`trustForwardedHeaders`): the last `X-Forwarded-For` entry
    (the one that proxy wrote; earlier ones are whatever the client said), then
    `X-Real-IP`, then the peer address."""
    forwarded = call.metadata.get("x-forwarded-for")
    if forwarded:
        return forwarded.rsplit(",", 1)[-1].strip() or ANONYMOUS
    real = call.metadata.get("x-real-ip")
    if real:
        return real.strip()
    return address(call)


def _header(name: str) -> KeyPart:
    def part(call: Call) -> str:
        return call.metadata.get(name) or ANONYMOUS

    return part


def _parts(app_id: Callable[[], str], trust_forwarded: bool) -> dict[str, KeyPart]:
    def caller(call: Call) -> str:
        if call.caller:
            return call.caller
        return app_id() if call.hop is Hop.APP_API else ANONYMOUS  # our own app calling

    return {
        "global": lambda call: "",
        "caller": caller,
        "identity": lambda call: call.identity or ANONYMOUS,
        "target": lambda call: call.target,
        "method": lambda call: f"{call.target}/{call.subject}",
        "route": lambda call: call.route,
        "address": forwarded_address if trust_forwarded else address,
    }


KINDS = ("address", "caller", "global", "header:<name>", "identity", "method", "route", "target")


def parse(spec: str, app_id: Callable[[], str], trust_forwarded: bool = False) -> Callable[[Call], str]:
    """The key function for `spec`; a ValueError names the unknown kind and the known ones.
    `trust_forwarded`: `address` believes `X-Forwarded-For`/`X-Real-IP` (behind a proxy)."""
    known = _parts(app_id, trust_forwarded)
    parts: list[KeyPart] = []
    for raw in spec.split(","):
        kind = raw.strip()
        if kind.lower().startswith("header:") and kind[7:].strip():
            parts.append(_header(kind[7:].strip()))
        elif kind in known:
            parts.append(known[kind])
        else:
            raise ValueError(
                f"unknown key kind {kind!r} (kinds: {', '.join(KINDS)}; join several with commas)"
            )
    if len(parts) == 1:
        return parts[0]
    return lambda call: "|".join(part(call) for part in parts)


def normalise(spec: str) -> str:
    """The spec as a label: kinds trimmed, header names lower-cased."""
    kinds = []
    for raw in spec.split(","):
        kind = raw.strip()
        kinds.append(f"header:{kind[7:].strip().lower()}" if kind.lower().startswith("header:") else kind)
    return ",".join(kinds)

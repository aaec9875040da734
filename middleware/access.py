"""Dapr's service-invocation access control (`spec.accessControl`), enforced by the callee.

The caller is known by its SPIFFE ID (`spiffe://<trust-domain>/ns/<namespace>/<app-id>`),
verified by mTLS. Dapr's rules, in order:
1. a policy applies when its app id and namespace are the caller's (policies are keyed by
   both, as Dapr's) and its trust domain matches too; otherwise the global default action;
2. within a policy, the most specific operation matching the method path (`/op`, `*` one
   segment, `**` any number of segments) and listing the verb (or `*`) decides; no such
   operation: the policy's default action, or the global one when the policy names none;
3. a caller whose identity was not verified (mTLS off) gets the global default action.

The method path is matched as the app will read it: percent-decoded once, duplicate
slashes collapsed, and for HTTP apps lowercased (rules too), as Dapr does. Where Dapr
resolves dot segments, outrig denies them: a path that after decoding still holds `.` or
`..` segments, an encoded `/`, `\\` or NUL (`%2F`, `%5C`, `%00`: double encoding), a
backslash or a NUL is denied whatever the rules say, since apps and proxies disagree on
what such paths mean.

A denied call fails with 403 and Dapr's message (`access control policy has denied access
to id: ... operation: ... verb: ...`), and the server span gets an `access denied` event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from opentelemetry import trace

from ._call import Call, Hop, Next, Result
from ._errors import ERR_DIRECT_INVOKE, CallError

ALLOW, DENY = "allow", "deny"
ATTR_ACCESS = "outrig.access.action"
"""`allow` or `deny`, on the server span of a peer call access control looked at."""
ATTR_ACCESS_POLICY = "outrig.access.policy"
"""What decided: `global`, `app` (a policy's default) or `operation`."""


@dataclass(frozen=True)
class Operation:
    name: str
    verbs: frozenset[str]
    action: str
    segments: tuple[str, ...] = field(init=False)
    folded: tuple[str, ...] = field(init=False)
    """`segments` lowercased, for HTTP apps (Dapr matches their paths case-insensitively)."""

    def __post_init__(self) -> None:
        segments = _segments(self.name if self.name.startswith("/") else "/" + self.name)
        object.__setattr__(self, "segments", segments)
        object.__setattr__(self, "folded", tuple(part.lower() for part in segments))

    def rank(self, path: Sequence[str], fold_case: bool = False) -> tuple[int, ...] | None:
        """How specifically this operation's pattern matches `path` (lower is more specific),
        or None when it does not match; `fold_case`: `path` is lowercased, match it so."""
        return _match(self.folded if fold_case else self.segments, tuple(path))


def _match(pattern: tuple[str, ...], path: tuple[str, ...]) -> tuple[int, ...] | None:
    if not pattern:
        return () if not path else None
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        best: tuple[int, ...] | None = None
        for skip in range(len(path) + 1):
            tail = _match(rest, path[skip:])
            if tail is not None and (best is None or (2, *tail) < best):
                best = (2, *tail)
        return best
    if not path:
        return None
    if head == "*" or head == path[0]:
        tail = _match(rest, path[1:])
        return None if tail is None else (1 if head == "*" else 0, *tail)
    return None


def _segments(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.split("/") if part not in ("", "."))


_SUSPECT = ("%2f", "%5c", "%00", "\\", "\x00")


def normalize_method(method: str, fold_case: bool) -> tuple[str, ...] | None:
    """The segments of a still percent-encoded method path as the app will see it, or None
    when the path must be denied whatever the rules (see the module's docstring)."""
    decoded = unquote(method, errors="strict") if "%" in method else method
    lowered = decoded.lower()
    if any(mark in lowered for mark in _SUSPECT):
        return None
    parts = [part for part in decoded.split("/") if part]
    if any(part in (".", "..") for part in parts):
        return None
    return tuple(part.lower() for part in parts) if fold_case else tuple(parts)


@dataclass(frozen=True)
class AppPolicy:
    app_id: str
    trust_domain: str
    namespace: str
    default_action: str | None
    """None: the global default action applies (Dapr's fallback)."""
    operations: tuple[Operation, ...] = ()


@dataclass(frozen=True)
class AccessControlList:
    default_action: str
    trust_domain: str
    policies: dict[tuple[str, str], AppPolicy] = field(default_factory=dict)
    """Keyed by (app id, namespace): one app id may have a policy per namespace."""
    fold_case: bool = True
    """Match paths and operation names case-insensitively (Dapr does, for HTTP apps)."""

    def decide(self, identity: str | None, method: str, verb: str) -> tuple[str, str]:
        """(`allow` or `deny`, which rule decided) for a call to `method` (the method path as
        sent, still percent-encoded) with `verb`."""
        caller = _parse(identity)
        if caller is None:
            return self.default_action, "global"
        trust_domain, namespace, app_id = caller
        policy = self.policies.get((app_id, namespace))
        if policy is None or policy.trust_domain != trust_domain:
            return self.default_action, "global"
        try:
            path = normalize_method(method, self.fold_case)
        except UnicodeDecodeError:
            path = None
        if path is None:
            return DENY, "operation"
        best: tuple[tuple[int, ...], Operation] | None = None
        for operation in policy.operations:
            rank = operation.rank(path, self.fold_case)
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, operation)
        if best is not None and (verb.upper() in best[1].verbs or "*" in best[1].verbs):
            return best[1].action, "operation"
        if policy.default_action is None:
            return self.default_action, "global"
        return policy.default_action, "app"


def _parse(identity: str | None) -> tuple[str, str, str] | None:
    if not identity or not identity.startswith("spiffe://"):
        return None
    parts = identity[len("spiffe://") :].split("/")
    if len(parts) != 4 or parts[1] != "ns":
        return None
    return parts[0], parts[2], parts[3]


class AccessControl:
    """Middleware on the callee's peer pipeline: lets a peer invocation through, or fails
    it with 403, as the access-control list says."""

    def __init__(self, acl: AccessControlList) -> None:
        self.acl = acl

    async def __call__(self, call: Call, call_next: Next) -> Result:
        if call.hop is not Hop.PEER or call.block != "invoke":
            return await call_next(call)
        action, rule = self.acl.decide(call.identity, call.subject, call.verb)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({ATTR_ACCESS: action, ATTR_ACCESS_POLICY: rule})
        if action == ALLOW:
            return await call_next(call)
        operation = "/" + call.subject.lstrip("/")
        caller = call.identity or f"unverified caller {call.caller or '(unknown)'}"
        denied = "access control policy has denied access to"
        message = f"{denied} id: {caller} operation: {operation} verb: {call.verb}"
        span.add_event("access denied", {"outrig.access.caller": caller, "outrig.access.rule": rule})
        raise CallError(ERR_DIRECT_INVOKE, f"fail to invoke, id: {call.target}, err: {message}", 403)

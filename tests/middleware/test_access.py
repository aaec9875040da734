"""Dapr's access-control rules, decided for SPIFFE IDs, paths and verbs."""

from __future__ import annotations

import asyncio

import pytest

from outrig.middleware import Call, CallError, Hop, Result
from outrig.middleware.access import AccessControl, AccessControlList, AppPolicy, Operation
from outrig.runtime.resources.models import AccessControlSpec
from outrig.runtime.security.policy import access_control_list

FRONT = "spiffe://public/ns/default/front"


def acl() -> AccessControlList:
    ops = (
        Operation("/items/**", frozenset({"GET", "POST"}), "allow"),
        Operation("/items/secret", frozenset({"*"}), "deny"),
        Operation("/users/*/profile", frozenset({"GET"}), "allow"),
        Operation("admin", frozenset({"*"}), "allow"),
    )
    return AccessControlList(
        "deny",
        "public",
        {("front", "default"): AppPolicy("front", "public", "default", "deny", ops)},
    )


@pytest.mark.parametrize(
    ("identity", "method", "verb", "expected"),
    [
        (FRONT, "items/7", "GET", ("allow", "operation")),
        (FRONT, "items/a/b/c", "POST", ("allow", "operation")),
        (FRONT, "items", "GET", ("allow", "operation")),  # `**` matches no segment too
        (FRONT, "items/7", "DELETE", ("deny", "app")),  # verb not listed: the policy's default
        (FRONT, "items/secret", "GET", ("deny", "operation")),  # the exact path beats `**`
        (FRONT, "users/42/profile", "GET", ("allow", "operation")),
        (FRONT, "users/42/extra/profile", "GET", ("deny", "app")),  # `*` is one segment
        (FRONT, "/admin", "PUT", ("allow", "operation")),  # names without a leading slash too
        (FRONT, "items/../admin2", "GET", ("deny", "operation")),  # no escaping by `..`
        (FRONT, "other", "GET", ("deny", "app")),
        ("spiffe://public/ns/prod/front", "items/7", "GET", ("deny", "global")),  # other namespace
        ("spiffe://other/ns/default/front", "items/7", "GET", ("deny", "global")),  # other trust domain
        ("spiffe://public/ns/default/back", "items/7", "GET", ("deny", "global")),  # no policy
        (None, "items/7", "GET", ("deny", "global")),  # not verified: the global default
    ],
)
def test_decisions_follow_daprs_rules(
    identity: str | None, method: str, verb: str, expected: tuple[str, str]
) -> None:
    assert acl().decide(identity, method, verb) == expected


def test_configuration_defaults_follow_dapr() -> None:
    assert access_control_list(None) is None
    assert access_control_list(AccessControlSpec()) is None  # no policy: everything allowed
    only_policies = AccessControlSpec.model_validate({"policies": [{"appId": "front"}]})
    built = access_control_list(only_policies)
    assert built is not None and built.default_action == "deny"  # Dapr's "safer option"
    assert built.decide("spiffe://public/ns/default/other", "x", "GET") == ("deny", "global")
    # A policy without its own defaultAction falls back to the global one (Dapr), not allow.
    assert built.decide(FRONT, "x", "GET") == ("deny", "global")
    allowing = AccessControlSpec.model_validate(
        {"defaultAction": "allow", "policies": [{"appId": "front",
         "operations": [{"name": "/admin", "httpVerb": ["*"], "action": "deny"}]}]}
    )  # fmt: skip
    built = access_control_list(allowing)
    assert built is not None and built.decide(FRONT, "x", "GET") == ("allow", "global")
    assert built.decide(FRONT, "admin", "GET") == ("deny", "operation")
    explicit = AccessControlSpec.model_validate({"defaultAction": "allow", "policies": [{"appId": "front"}]})
    built = access_control_list(explicit)
    assert built is not None and built.default_action == "allow"
    verbs = AccessControlSpec.model_validate(
        {"policies": [{"appId": "front", "defaultAction": "deny",
                       "operations": [{"name": "/x", "httpVerb": ["get"], "action": "allow"}]}]}
    )  # fmt: skip
    built = access_control_list(verbs)
    assert built is not None and built.decide(FRONT, "x", "GET") == ("allow", "operation")


def test_policies_for_one_app_id_in_two_namespaces_are_both_kept() -> None:
    """Dapr's scenario: app1 allowed in ns1, denied in ns2."""
    spec = AccessControlSpec.model_validate(
        {"defaultAction": "deny", "policies": [
            {"appId": "app1", "namespace": "ns1", "defaultAction": "allow"},
            {"appId": "app1", "namespace": "ns2", "defaultAction": "deny"},
        ]}
    )  # fmt: skip
    built = access_control_list(spec)
    assert built is not None
    assert built.decide("spiffe://public/ns/ns1/app1", "x", "GET") == ("allow", "app")
    assert built.decide("spiffe://public/ns/ns2/app1", "x", "GET") == ("deny", "app")
    assert built.decide("spiffe://public/ns/ns3/app1", "x", "GET") == ("deny", "global")


def guarded(app_protocol: str = "http") -> AccessControlList:
    """Deny `/admin` and `/admin/**`, allow `/pub/*`, everything else denied by default."""
    spec = AccessControlSpec.model_validate(
        {"defaultAction": "allow", "policies": [{"appId": "front", "defaultAction": "deny", "operations": [
            {"name": "/admin", "httpVerb": ["*"], "action": "deny"},
            {"name": "/admin/**", "httpVerb": ["*"], "action": "deny"},
            {"name": "/pub/*", "httpVerb": ["*"], "action": "allow"},
            {"name": "/Mixed/*", "httpVerb": ["*"], "action": "allow"},
        ]}]}
    )  # fmt: skip
    built = access_control_list(spec, app_protocol)
    assert built is not None
    return built


@pytest.mark.parametrize(
    "method",
    [
        "%61dmin",  # percent-encoded letters
        "admin%2Fx",  # an encoded slash
        "admin%2fx",
        "x/%2e%2e/admin",  # encoded dot segments
        "x/../admin",
        "./admin",
        "Admin",  # case: HTTP apps' paths are matched case-insensitively, as in Dapr
        "ADMIN/users",
        "pub/%2e%2e",  # an allow-only rule escaped upward
        "pub/..",
        "pub/x%252Fy",  # double encoding: %2F left after one decoding
        "pub/x%5Cy",  # backslash
        "pub/x%255Cy",
        "pub/x%00",  # NUL
        "pub/%ff",  # not UTF-8
        "//admin",  # duplicate slashes
        "admin//",
    ],
)
def test_encoded_and_disguised_paths_do_not_get_past_the_rules(method: str) -> None:
    assert guarded().decide(FRONT, method, "GET")[0] == "deny", method


def test_paths_are_normalized_before_matching() -> None:
    acl_ = guarded()
    assert acl_.decide(FRONT, "pub/a%20b", "GET") == ("allow", "operation")  # decoded once
    assert acl_.decide(FRONT, "pub//item", "GET") == ("allow", "operation")  # duplicate slash
    assert acl_.decide(FRONT, "PUB/item", "GET") == ("allow", "operation")
    assert acl_.decide(FRONT, "mixed/item", "GET") == ("allow", "operation")  # rules lowercased too
    # gRPC apps: method names are matched as written (Dapr lowercases for HTTP apps only).
    grpc = guarded("grpc")
    assert grpc.decide(FRONT, "Mixed/item", "GET") == ("allow", "operation")
    assert grpc.decide(FRONT, "mixed/item", "GET") == ("deny", "app")
    assert grpc.decide(FRONT, "%61dmin", "GET") == ("deny", "operation")


def call(hop: Hop, identity: str | None, method: str = "items/secret") -> Call:
    return Call("invoke", "invoke", "back", method, hop, "/r", verb="GET", identity=identity, caller="front")


async def ok(_call: Call) -> Result:
    return Result(200)


def test_the_middleware_denies_peer_calls_with_403_and_daprs_message() -> None:
    middleware = AccessControl(acl())
    with pytest.raises(CallError) as denied:
        asyncio.run(middleware(call(Hop.PEER, FRONT), ok))
    assert denied.value.status == 403
    assert denied.value.code == "ERR_DIRECT_INVOKE"
    assert denied.value.message == (
        "fail to invoke, id: back, err: access control policy has denied access to "
        f"id: {FRONT} operation: /items/secret verb: GET"
    )
    assert asyncio.run(middleware(call(Hop.PEER, FRONT, "items/1"), ok)).status == 200
    # Only peer invocations are subject to it: an app calling its own sidecar is not.
    assert asyncio.run(middleware(call(Hop.APP_API, None), ok)).status == 200

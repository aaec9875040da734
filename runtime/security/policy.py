"""Dapr's `spec.accessControl` as the access-control list `middleware.access` enforces."""

from __future__ import annotations

from outrig.middleware.access import AccessControlList, AppPolicy, Operation

from ..resources.models import AccessControlSpec


def access_control_list(
    spec: AccessControlSpec | None, app_protocol: str = "http"
) -> AccessControlList | None:
    """The list to enforce, or None when every caller is allowed everything (no policy).

    Policies are keyed by (app id, namespace), as Dapr's: the same app id in two namespaces
    has two policies. A policy without `defaultAction` falls back to the global one. For
    HTTP apps (any `app_protocol` but grpc and grpcs), paths and operation names match regardless of
    case, as in Dapr."""
    if spec is None or (not spec.policies and spec.defaultAction == "allow"):
        return None
    default: str = spec.defaultAction
    if "defaultAction" not in spec.model_fields_set and spec.policies:
        # Dapr: app policies without a global default action mean "deny the others".
        default = "deny"
    policies = {
        (policy.appId, policy.namespace): AppPolicy(
            app_id=policy.appId,
            trust_domain=policy.trustDomain,
            namespace=policy.namespace,
            default_action=policy.defaultAction,
            operations=tuple(
                Operation(op.name, frozenset(verb.upper() for verb in op.httpVerb), op.action)
                for op in policy.operations
            ),
        )
        for policy in spec.policies
    }
    return AccessControlList(
        default, spec.trustDomain, policies, fold_case=app_protocol not in ("grpc", "grpcs")
    )

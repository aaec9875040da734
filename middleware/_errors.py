"""Errors as values: a Dapr error code, a message and the status it maps to.

Raised anywhere in a pipeline, turned into a `Result` once by the error-mapping layer, and
rendered by each adapter in its own shape (Dapr's JSON body for HTTP, a status for gRPC).
Both carry Dapr's richer error model (google.rpc `ErrorInfo`, `ResourceInfo`, `BadRequest`)
when the error has a Dapr reason code, so an SDK user can act on `reason`, not on text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DOMAIN = "dapr.io"
"""The `ErrorInfo.domain` of every Dapr error."""
TYPE_PREFIX = "type.googleapis.com/google.rpc."


class CallError(Exception):
    """A failure the caller should see, with Dapr's error code and an HTTP status.

    Optional `details` keywords feed the richer error model: `reason` (Dapr's reason code,
    e.g. `DAPR_STATE_ILLEGAL_KEY`; else the one Dapr gives `code`, if any),
    `resource_type`/`resource_name`/`resource_owner` (a `ResourceInfo`), `field_violations` (a sequence of
    `(field, description)` pairs: a `BadRequest`), `metadata` (`ErrorInfo.metadata`), and
    `grpc_code` (a `grpc.StatusCode` name such as "UNAVAILABLE" that overrides the one
    mapped from `status`, for errors that came from a gRPC peer).
    """

    def __init__(self, code: str, message: str, status: int = 500, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details

    @property
    def reason(self) -> str | None:
        """Dapr's reason code for `ErrorInfo`, or None when Dapr has none for this error."""
        reason = self.details.get("reason")
        if reason:
            return str(reason)
        return REASONS.get(self.code)

    def located(self, resource_type: str, resource_name: str) -> CallError:
        """A copy naming the resource the error is about (adapters know the store or pubsub
        of the call), as Dapr's `ResourceInfo` does: not for errors that name none (one
        without a reason, a store that is not found or not configured), nor over a
        resource the error names already. The error itself is left as it is."""
        if self.reason is None or "resource_type" in self.details or self.code in UNLOCATED:
            return self
        copy = CallError(self.code, self.message, self.status, **self.details)
        copy.details["resource_type"] = resource_type
        copy.details["resource_name"] = resource_name
        return copy

    def rich_details(self) -> list[dict[str, Any]]:
        """Dapr's richer error details as JSON (`@type` plus the message's fields), empty
        when the error has no Dapr reason code."""
        reason = self.reason
        if reason is None:
            return []
        info: dict[str, Any] = {"@type": TYPE_PREFIX + "ErrorInfo", "reason": reason, "domain": DOMAIN}
        metadata = self.details.get("metadata")
        if metadata:
            info["metadata"] = {str(k): str(v) for k, v in metadata.items()}
        details = [info]
        if self.details.get("resource_type"):
            details.append(
                {
                    "@type": TYPE_PREFIX + "ResourceInfo",
                    "resource_type": str(self.details["resource_type"]),
                    "resource_name": str(self.details.get("resource_name", "")),
                    "owner": str(self.details.get("resource_owner", "")),
                    "description": "" if self.details["resource_type"] == "state" else self.message,
                }
            )
        violations: Sequence[tuple[str, str]] = self.details.get("field_violations") or ()
        if violations:
            details.append(
                {
                    "@type": TYPE_PREFIX + "BadRequest",
                    "field_violations": [{"field": f, "description": d} for f, d in violations],
                }
            )
        return details

    def to_json(self) -> dict[str, Any]:
        """Dapr's HTTP error body: `{"errorCode": ..., "message": ...}`, plus `details`
        (the richer error model) when the error has a Dapr reason code."""
        body: dict[str, Any] = {"errorCode": self.code, "message": self.message}
        details = self.rich_details()
        if details:
            body["details"] = details
        return body

    def __repr__(self) -> str:
        return f"CallError({self.code!r}, {self.message!r}, status={self.status})"


# Dapr's codes, by the situation they describe (docs: "Error codes reference guide").
ERR_DIRECT_INVOKE = "ERR_DIRECT_INVOKE"
ERR_MALFORMED_REQUEST = "ERR_MALFORMED_REQUEST"
ERR_NOT_FOUND = "ERR_NOT_FOUND"
ERR_HEALTH_NOT_READY = "ERR_HEALTH_NOT_READY"
ERR_INTERNAL = "ERR_INTERNAL"
ERR_MIDDLEWARE = "ERR_MIDDLEWARE"

REASONS: dict[str, str] = {
    "ERR_STATE_STORE_NOT_FOUND": "DAPR_STATE_NOT_FOUND",
    "ERR_STATE_STORE_NOT_CONFIGURED": "DAPR_STATE_NOT_CONFIGURED",
    "ERR_PUBSUB_NOT_FOUND": "DAPR_PUBSUB_NOT_FOUND",
    "ERR_PUBSUB_NOT_CONFIGURED": "DAPR_PUBSUB_NOT_CONFIGURED",
    "ERR_PUBSUB_EMPTY": "DAPR_PUBSUB_NAME_EMPTY",
    "ERR_TOPIC_EMPTY": "DAPR_PUBSUB_TOPICNAME_EMPTY",
    "ERR_PUBSUB_PUBLISH_MESSAGE": "DAPR_PUBSUB_PUBLISH_MESSAGE",
    "ERR_PUBSUB_REQUEST_METADATA": "DAPR_PUBSUB_METADATA_DESERIALIZATION",
    "ERR_PUBSUB_FORBIDDEN": "DAPR_PUBSUB_FORBIDDEN",
}
"""Dapr's reason code (`ErrorInfo.reason`) for each error code that has exactly one in
dapr/dapr `pkg/api/errors`. Codes Dapr gives several reasons (`ERR_STATE_STORE_NOT_SUPPORTED`:
`DAPR_STATE_QUERYING_NOT_SUPPORTED` or `DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED`;
`ERR_PUBSUB_CLOUD_EVENTS_SER`: `DAPR_PUBSUB_CLOUD_EVENT_CREATION` or `..._MARSHAL_ENVELOPE`;
`ERR_PUBSUB_EVENTS_SER`: `..._MARSHAL_EVENTS` or `..._UNMARSHAL_EVENTS`) pass `reason=` where
they are raised. Errors with neither carry no details, as in Dapr (an etag mismatch among them)."""

UNLOCATED = frozenset(
    {
        "ERR_STATE_STORE_NOT_FOUND",
        "ERR_STATE_STORE_NOT_CONFIGURED",
        "ERR_LOCK_STORE_NOT_FOUND",
        "ERR_LOCK_STORE_NOT_CONFIGURED",
    }
)
"""Errors Dapr gives no `ResourceInfo` (the store they would name does not exist)."""

"""Errors as values: a Dapr error code, a message and the status it maps to.

Raised anywhere in a pipeline, turned into a `Result` once by the error-mapping layer, and
rendered by each adapter in its own shape (Dapr's JSON body for HTTP, a status for gRPC).
"""

from __future__ import annotations

from typing import Any


class CallError(Exception):
    """A failure the caller should see, with Dapr's error code and an HTTP status."""

    def __init__(self, code: str, message: str, status: int = 500, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details

    def to_json(self) -> dict[str, Any]:
        """Dapr's HTTP error body: `{"errorCode": ..., "message": ...}`."""
        return {"errorCode": self.code, "message": self.message}

    def __repr__(self) -> str:
        return f"CallError({self.code!r}, {self.message!r}, status={self.status})"


# Dapr's codes, by the situation they describe (docs: "Error codes reference guide").
ERR_DIRECT_INVOKE = "ERR_DIRECT_INVOKE"
ERR_MALFORMED_REQUEST = "ERR_MALFORMED_REQUEST"
ERR_NOT_FOUND = "ERR_NOT_FOUND"
ERR_HEALTH_NOT_READY = "ERR_HEALTH_NOT_READY"
ERR_INTERNAL = "ERR_INTERNAL"
ERR_MIDDLEWARE = "ERR_MIDDLEWARE"

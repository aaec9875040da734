"""Dapr's secrets HTTP API.

GET /v1.0/secrets/{store}/{name}   -> 200 {key: value, ...}  (`?metadata.k=v` for the store)
GET /v1.0/secrets/{store}/bulk     -> 200 {name: {key: value}, ...}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from outrig.middleware import Call, CallError, Hop, Result

from ..blocks.secrets import BulkSecretRequest, GetSecretRequest
from .asgi import Receive, Scope, Send, path_after, request_call, run_call, send_json

SECRETS_PREFIX = b"/v1.0/secrets/"
ROUTE_SECRET = "/v1.0/secrets/{secretStoreName}/{key}"
ROUTE_BULK = "/v1.0/secrets/{secretStoreName}/bulk"


def is_secrets_path(raw: bytes) -> bool:
    return raw.startswith(SECRETS_PREFIX)


def query_metadata(query: str) -> dict[str, str]:
    """Dapr's `metadata.<name>=<value>` query parameters, without the prefix."""
    return {k[len("metadata.") :]: v for k, v in parse_qsl(query) if k.startswith("metadata.")}


class SecretsApi:
    def __init__(self, pipeline: Callable[[Call], Awaitable[Result]]) -> None:
        self.pipeline = pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        store, name = path_after(scope, SECRETS_PREFIX)

        async def make() -> Call:
            if scope["method"] not in ("GET", "HEAD"):
                raise CallError("ERR_METHOD_NOT_ALLOWED", f"{scope['method']} is not allowed; use GET", 405)
            if not store or not name or "/" in name:
                raise CallError(
                    "ERR_MALFORMED_REQUEST",
                    "expected /v1.0/secrets/{secretStoreName}/{name} or /v1.0/secrets/{secretStoreName}/bulk",
                    400,
                )
            bulk = name == "bulk"
            call = await request_call(
                scope, receive, hop=Hop.APP_API, target=store, subject="" if bulk else name,
                route=ROUTE_BULK if bulk else ROUTE_SECRET, block="secrets",
                operation="bulk_get" if bulk else "get",
            )  # fmt: skip
            metadata = query_metadata(call.query)
            call.request = BulkSecretRequest(metadata) if bulk else GetSecretRequest(name, metadata)
            return call

        result = await run_call(self.pipeline, send, make)
        if result is not None:
            await send_json(send, 200, result.value)

"""Dapr's distributed lock HTTP API (alpha): JSON in, lock requests out, and back.

POST /v1.0-alpha1/lock/{store}    {resourceId, lockOwner, expiryInSeconds} -> 200 {"success": bool}
POST /v1.0-alpha1/unlock/{store}  {resourceId, lockOwner}                  -> 200 {"status": 0..3}

Unlock statuses are Dapr's numbers: 0 SUCCESS, 1 LOCK_DOES_NOT_EXIST,
2 LOCK_BELONGS_TO_OTHERS, 3 INTERNAL_ERROR (a store failure is a 500 `ERR_UNLOCK`, as in
Dapr's HTTP API). Malformed bodies are 400 `ERR_MALFORMED_REQUEST` naming the field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from outrig.middleware import Call, CallError, Hop, Result

from ..blocks.lock import TryLockRequest, UnlockRequest
from ..blocks.requests import FromBody
from .asgi import Receive, Scope, Send, path_after, request_call, run_call, send_json
from .state_http import _bad, _json

LOCK_PREFIX = b"/v1.0-alpha1/lock/"
UNLOCK_PREFIX = b"/v1.0-alpha1/unlock/"
ROUTE_LOCK = "/v1.0-alpha1/lock/{storeName}"
ROUTE_UNLOCK = "/v1.0-alpha1/unlock/{storeName}"
MAX_EXPIRY = 2**31 - 1
"""Dapr's `expiryInSeconds` is an int32."""


def is_lock_path(raw: bytes) -> bool:
    return raw.startswith(LOCK_PREFIX) or raw.startswith(UNLOCK_PREFIX)


def _fields(call: Call, body: bytes, what: str) -> dict[str, Any]:
    doc = _json(body if body.strip() else b"{}", f"{what} (lock store {call.target})")
    if not isinstance(doc, dict):
        raise _bad(f"{what} (lock store {call.target}): the body must be a JSON object")
    return doc


def _text(doc: dict[str, Any], field: str, call: Call, label: str) -> str:
    value = doc.get(field)
    if value is None or value == "":
        raise _bad(f"{label} is empty in lock store {call.target} (field {field})")
    if not isinstance(value, str):
        raise _bad(f"field {field} must be a string in lock store {call.target}, got {value!r}")
    return value


def _expiry(doc: dict[str, Any], call: Call) -> int:
    raw = doc.get("expiryInSeconds", 0)
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _bad(f"field expiryInSeconds must be a whole number of seconds in lock store {call.target}, "
                   f"got {raw!r}")  # fmt: skip
    if raw <= 0:
        raise _bad(f"ExpiryInSeconds is not positive in lock store {call.target} (got {raw})")
    if raw > MAX_EXPIRY:
        raise _bad(f"field expiryInSeconds is too large in lock store {call.target}: got {raw}, the most is "
                   f"{MAX_EXPIRY} (Dapr's field is a 32-bit integer)")  # fmt: skip
    return raw


def _try_lock(call: Call, body: bytes) -> TryLockRequest:
    doc = _fields(call, body, "lock")
    resource = _text(doc, "resourceId", call, "ResourceId")
    owner = _text(doc, "lockOwner", call, "LockOwner")
    return TryLockRequest(resource, owner, _expiry(doc, call))


def _unlock(call: Call, body: bytes) -> UnlockRequest:
    doc = _fields(call, body, "unlock")
    return UnlockRequest(
        _text(doc, "resourceId", call, "ResourceId"), _text(doc, "lockOwner", call, "LockOwner")
    )


class LockApi:
    def __init__(self, pipeline: Callable[[Call], Awaitable[Result]]) -> None:
        self.pipeline = pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        locking = raw.startswith(LOCK_PREFIX)
        store, rest = path_after(scope, LOCK_PREFIX if locking else UNLOCK_PREFIX)
        operation, route = ("try_lock", ROUTE_LOCK) if locking else ("unlock", ROUTE_UNLOCK)

        async def make() -> Call:
            if rest or not store:
                raise CallError("ERR_NOT_FOUND", f"no lock API route {scope['path']}; use {route}", 404)
            if scope["method"] != "POST":
                raise CallError(
                    "ERR_METHOD_NOT_ALLOWED", f"{scope['method']} is not allowed on {route}; use POST", 405
                )
            call = await request_call(
                scope, receive, hop=Hop.APP_API, target=store, subject="", route=route, block="lock",
                operation=operation,
            )  # fmt: skip
            await call.read()
            call.request = FromBody(_try_lock if locking else _unlock)
            return call

        result = await run_call(self.pipeline, send, make)
        if result is None:
            return
        if locking:
            await send_json(send, 200, {"success": bool(result.value)})
        else:
            await send_json(send, 200, {"status": int(result.value)})

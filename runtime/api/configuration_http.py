"""Dapr's configuration HTTP API, under `/v1.0/` and (as Dapr still serves it) `/v1.0-alpha1/`.

GET /v1.0/configuration/{store}?key=a&key=b          -> 200 {"a": {value, version, metadata}}
                                                        (all items without `key`; 204 when none)
GET /v1.0/configuration/{store}/subscribe?key=a      -> 200 {"id": "<subscription id>"}
GET /v1.0/configuration/{store}/{id}/unsubscribe     -> 200 {"ok": true}
                                                        (500 {"ok": false, "message"} when it fails)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from outrig.middleware import Call, CallError, Hop, Result

from ..blocks.configuration import GetConfiguration, SubscribeConfiguration, UnsubscribeConfiguration
from ..components.configuration import Item
from ..transport import HEADER_CODEC
from .asgi import (
    Receive,
    Scope,
    Send,
    path_after,
    request_call,
    run_call,
    send_empty,
    send_json,
)

UNSUBSCRIBE_ERROR = "ERR_CONFIGURATION_UNSUBSCRIBE"
PREFIXES = (b"/v1.0/configuration/", b"/v1.0-alpha1/configuration/")
ROUTES = {
    "get": "/{version}/configuration/{storeName}",
    "subscribe": "/{version}/configuration/{storeName}/subscribe",
    "unsubscribe": "/{version}/configuration/{storeName}/{subscribeId}/unsubscribe",
}


def is_configuration_path(raw: bytes) -> bool:
    return raw.startswith(PREFIXES)


def _locate(rest: str, query: str) -> tuple[str, object]:
    """(operation, request) for the path after the store name."""
    parts = rest.split("/") if rest else []
    keys = [value for name, value in parse_qsl(query) if name == "key" and value]
    if not parts:
        return "get", GetConfiguration(keys)
    if parts == ["subscribe"]:
        return "subscribe", SubscribeConfiguration(keys)
    if len(parts) == 2 and parts[1] == "unsubscribe" and parts[0]:
        return "unsubscribe", UnsubscribeConfiguration(parts[0])
    raise CallError(
        "ERR_NOT_FOUND",
        f"no configuration API route /{rest}; use /{{store}}, /{{store}}/subscribe"
        " or /{{store}}/{{id}}/unsubscribe",
        404,
    )


class ConfigurationApi:
    def __init__(self, pipeline: Callable[[Call], Awaitable[Result]]) -> None:
        self.pipeline = pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        prefix = next(p for p in PREFIXES if raw.startswith(p))
        version = prefix.split(b"/")[1].decode()
        store, rest = path_after(scope, prefix)
        query = scope.get("query_string", b"").decode("latin-1")
        operation = ""

        async def make() -> Call:
            nonlocal operation
            if not store:
                raise CallError("ERR_NOT_FOUND", "the configuration API needs a store name", 404)
            operation, request = _locate(rest, query)
            if scope["method"] not in ("GET", "HEAD"):
                raise CallError(
                    "ERR_METHOD_NOT_ALLOWED",
                    f"{scope['method']} is not allowed on the configuration API; use GET",
                    405,
                )
            route = ROUTES[operation].replace("{version}", version)
            call = await request_call(
                scope, receive, hop=Hop.APP_API, target=store, subject="", route=route,
                block="configuration", operation=operation,
            )  # fmt: skip
            call.request = request
            return call

        result = await run_call(_unsubscribe_answer(self.pipeline), send, make)
        if result is None:
            return
        if operation == "get":
            items: dict[str, Item] = result.value
            if not items:
                await send_empty(send, 204)
                return
            await send_json(send, 200, {key: item.to_json() for key, item in items.items()})
        elif operation == "subscribe":
            await send_json(send, 200, {"id": result.value})
        elif result.status != 200:
            await send_json(send, result.status, {"ok": False, "message": result.value}, _extra(result))
        else:
            await send_json(send, 200, {"ok": True})


def _unsubscribe_answer(pipeline: Callable[[Call], Awaitable[Result]]) -> Callable[[Call], Awaitable[Result]]:
    """Dapr answers a failed unsubscribe `{"ok": false, "message"}`, not its error body: such
    a result goes on as a value (the message) for `ConfigurationApi` to render."""

    async def run(call: Call) -> Result:
        result = await pipeline(call)
        error = result.error
        if call.operation == "unsubscribe" and error is not None and error.code == UNSUBSCRIBE_ERROR:
            return Result(error.status, headers=result.headers, value=error.message)
        return result

    return run


def _extra(result: Result) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(*HEADER_CODEC), v.encode(*HEADER_CODEC)) for k, v in result.headers.items()]

"""Dapr's state HTTP API: JSON in, protocol-neutral state requests out, and back.

POST   /v1.0/state/{store}               save a list of items       -> 204
GET    /v1.0/state/{store}/{key}          one value, `ETag` header   -> 200, or 204 if missing
DELETE /v1.0/state/{store}/{key}          `If-Match` for the etag    -> 204
POST   /v1.0/state/{store}/bulk           {"keys": [...]}            -> 200 [{key, data, etag}]
POST   /v1.0/state/{store}/transaction    {"operations": [...]}      -> 204 (all or nothing)
POST   /v1.0-alpha1/state/{store}/query   {filter, sort, page}       -> 200 {results, token}
       (PUT too, as Dapr; 204 with no body when nothing matches, as Dapr's runtime does)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import parse_qsl

from outrig.middleware import Call, CallError, Hop, Result

from ..blocks.requests import FromBody
from ..blocks.state import (
    BulkGetRequest,
    GetRequest,
    QueryRequest,
    WriteRequest,
    render_items,
    ttl_in_seconds,
)
from ..components.state import Delete, Operation, Stored, Upsert
from ..components.state.base import Concurrency
from ..components.state.query import QueryError, QueryPage, parse_query
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

STATE_PREFIX = b"/v1.0/state/"
ROUTE_STORE = "/v1.0/state/{storeName}"
ROUTE_KEY = "/v1.0/state/{storeName}/{key}"
ROUTE_BULK = "/v1.0/state/{storeName}/bulk"
ROUTE_TRANSACTION = "/v1.0/state/{storeName}/transaction"
ALPHA_STATE_PREFIX = b"/v1.0-alpha1/state/"
ROUTE_QUERY = "/v1.0-alpha1/state/{storeName}/query"


def _bad(message: str) -> CallError:
    return CallError("ERR_MALFORMED_REQUEST", message, 400)


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise _bad(f"{what}: the body is not valid JSON ({exc})") from None


def _concurrency(options: Any, where: str) -> Concurrency:
    """`options.concurrency`, checked; `options.consistency` is checked and needs nothing
    more: every store here answers a write only once it is applied (strong)."""
    options = options or {}
    if not isinstance(options, dict):
        raise _bad(f"{where}: options must be an object with concurrency and consistency, got {options!r}")
    value = options.get("concurrency") or None
    if value not in (None, "first-write", "last-write"):
        raise _bad(f"{where}: options.concurrency must be first-write or last-write, got {value!r}")
    consistency = options.get("consistency") or None
    if consistency not in (None, "eventual", "strong"):
        raise _bad(f"{where}: options.consistency must be eventual or strong, got {consistency!r}")
    return cast(Concurrency, value)


def _upsert(item: Any, where: str) -> Upsert:
    if not isinstance(item, dict):
        raise _bad(f"{where}: expected an object with key and value, got {type(item).__name__}")
    key = item.get("key")
    if not isinstance(key, str) or not key:
        raise _bad(f"{where}: field key is missing or not a non-empty string (got {key!r})")
    etag = item.get("etag")
    if etag is not None and not isinstance(etag, str):
        raise _bad(f"{where}: field etag must be a string, got {etag!r}")
    metadata = item.get("metadata") or {}
    value = json.dumps(item.get("value"), separators=(",", ":"), ensure_ascii=False).encode()
    return Upsert(
        key, value, etag or None, _concurrency(item.get("options"), where),
        ttl_in_seconds(metadata, where), {str(k): str(v) for k, v in metadata.items()},
    )  # fmt: skip


def _delete(item: Any, where: str) -> Delete:
    if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
        raise _bad(f"{where}: field key is missing or not a non-empty string")
    return Delete(item["key"], item.get("etag") or None, _concurrency(item.get("options"), where))


def _save_request(body: bytes) -> WriteRequest:
    items = _json(body, "save state")
    if not isinstance(items, list):
        raise _bad("save state: the body must be a JSON array of {key, value, etag, options, metadata}")
    return WriteRequest([_upsert(item, f"save state item {i}") for i, item in enumerate(items)])


def _transaction_request(body: bytes) -> WriteRequest:
    doc = _json(body, "state transaction")
    operations = doc.get("operations") if isinstance(doc, dict) else None
    if not isinstance(operations, list):
        raise _bad('state transaction: expected {"operations": [{"operation": ..., "request": ...}]}')
    ops: list[Operation] = []
    for i, entry in enumerate(operations):
        where = f"state transaction operation {i}"
        kind = entry.get("operation") if isinstance(entry, dict) else None
        if kind == "upsert":
            ops.append(_upsert(entry.get("request"), where))
        elif kind == "delete":
            ops.append(_delete(entry.get("request"), where))
        else:
            raise _bad(f"{where}: operation must be upsert or delete, got {kind!r}")
    return WriteRequest(ops, atomic=True, metadata=doc.get("metadata") or {})


def _bulk_request(body: bytes) -> BulkGetRequest:
    doc = _json(body, "bulk get")
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _bad('bulk get: expected {"keys": ["key", ...]}')
    return BulkGetRequest(keys)


def _query_request(body: bytes) -> QueryRequest:
    try:
        return QueryRequest(parse_query(_json(body, "query")))
    except QueryError as exc:
        raise _bad(str(exc)) from None


Route = tuple[str, str, Callable[[Call, bytes], Any]]


def _alpha_route(verb: str, key: str) -> Route:
    """`/v1.0-alpha1/state/{store}/...`: only the query lives there."""
    if key != "query":
        raise CallError("ERR_NOT_FOUND", f"no alpha state API route {key!r}; the alpha API has /query", 404)
    if verb not in ("POST", "PUT"):
        raise CallError(
            "ERR_METHOD_NOT_ALLOWED", f"{verb} is not allowed on a state query; use POST or PUT", 405
        )
    return "query", ROUTE_QUERY, lambda call, body: _query_request(body)


def _route(verb: str, key: str) -> Route:
    if key == "":
        if verb == "POST":
            return "save", ROUTE_STORE, lambda call, body: _save_request(body)
    elif key == "bulk" and verb == "POST":
        return "bulk_get", ROUTE_BULK, lambda call, body: _bulk_request(body)
    elif key == "transaction" and verb == "POST":
        return "transaction", ROUTE_TRANSACTION, lambda call, body: _transaction_request(body)
    elif verb == "GET":
        return "get", ROUTE_KEY, lambda call, body: GetRequest(key)
    elif verb == "DELETE":
        return (
            "delete",
            ROUTE_KEY,
            lambda call, body: WriteRequest(
                [Delete(key, call.metadata.get("if-match") or None, _query_concurrency(call))]
            ),
        )
    raise CallError("ERR_METHOD_NOT_ALLOWED", f"{verb} is not a state operation on this path", 405)


def _query_concurrency(call: Call) -> Concurrency:
    return _concurrency(dict(parse_qsl(call.query)), "delete state")


class StateApi:
    def __init__(self, pipeline: Callable[[Call], Awaitable[Result]]) -> None:
        self.pipeline = pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        alpha = raw.startswith(ALPHA_STATE_PREFIX)
        store, key = path_after(scope, ALPHA_STATE_PREFIX if alpha else STATE_PREFIX)
        operation, route, build = "", "", None

        async def make() -> Call:
            nonlocal operation, route, build
            operation, route, build = (_alpha_route if alpha else _route)(scope["method"], key)
            call = await request_call(
                scope, receive, hop=Hop.APP_API, target=store, subject=key, route=route,
                block="state", operation=operation,
            )  # fmt: skip
            await call.read()
            call.request = FromBody(build)
            return call

        result = await run_call(self.pipeline, send, make)
        if result is None:
            return
        if operation == "get":
            await _send_value(send, result.value)
        elif operation == "bulk_get":
            await send_json(send, 200, render_items(result.value))
        elif operation == "query":
            await _send_page(send, result.value)
        else:
            await send_empty(send, 204)


async def _send_value(send: Send, stored: Stored | None) -> None:
    if stored is None:
        await send_empty(send, 204)
        return
    headers = [
        (b"content-type", b"application/json"),
        (b"etag", stored.etag.encode()),
        (b"content-length", str(len(stored.value)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": stored.value})


async def _send_page(send: Send, page: QueryPage) -> None:
    """Dapr's query response: `{results: [{key, data, etag}], token}`, token only when more
    rows remain; no results is a 204 with no body, as Dapr's runtime answers."""
    if not page.items:
        await send_empty(send, 204)
        return
    body: dict[str, Any] = {"results": render_items([(item.key, item) for item in page.items])}
    if page.token is not None:
        body["token"] = page.token
    await send_json(send, 200, body)

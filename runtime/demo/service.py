"""One small demo service, written as an app developer would against Dapr's HTTP API.

Its role comes from its app id: `frontend` takes a checkout and asks `orders`; `orders` asks
`inventory` for stock, saves the order in the state store `statestore` and publishes it to
topic `orders` of pubsub `pubsub`; `inventory` answers stock queries and, subscribed to that
topic, takes each placed order off its stock. Each call goes to the app's own sidecar
(`DAPR_HTTP_PORT`) and passes the incoming W3C trace headers on, as any traced app does, so
the whole checkout, delivery included, is one trace.

Every service also answers `GET /ping` (200, for the stack's rate-limit bursts) and
`GET /flaky`, which fails (500) in the first FLAKY_FAILING_SECONDS of every FLAKY_PERIOD
seconds: the stack's output binding `flaky` calls it, so its circuit breaker trips and heals.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
STATE_STORE = "statestore"
PUBSUB = "pubsub"
TOPIC = "orders"
DELIVERY_ROUTE = "/orders-placed"

INITIAL_STOCK = {"espresso": 12, "croissant": 0, "bagel": 4}
RESTOCK_BELOW = 3
"""An item that had stock is restocked to its initial count once it falls below this, so a
long run (scripts/stack) keeps selling; `croissant` starts at 0 and stays sold out."""
STOCK = dict(INITIAL_STOCK)
FLAKY_PERIOD = 20
FLAKY_FAILING_SECONDS = 4

_client = httpx.AsyncClient(timeout=10)
"""One client for the app's lifetime: creating one per request costs tens of milliseconds."""

_order_numbers = itertools.count(1001)
_instance = secrets.token_hex(3)
"""Order ids are `<counter>-<instance>`: unique across restarts and across replicas."""


def _sidecar() -> str:
    return f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0"


def _trace_headers(request: Request) -> dict[str, str]:
    return {k: request.headers[k] for k in TRACE_HEADERS if k in request.headers}


def _reply_json(reply: httpx.Response) -> Any:
    try:
        return reply.json()
    except ValueError:
        return {"error": reply.text}


async def checkout(request: Request) -> JSONResponse:
    order = await request.json()
    reply = await _client.post(
        f"{_sidecar()}/invoke/orders/method/orders", json=order, headers=_trace_headers(request)
    )
    return JSONResponse(
        {"checkout": "done" if reply.status_code == 201 else "failed", "order": _reply_json(reply)},
        status_code=reply.status_code,
    )


async def create_order(request: Request) -> JSONResponse:
    order = await request.json()
    item, quantity = order["item"], order.get("quantity", 1)
    headers = _trace_headers(request)
    stock = await _client.get(f"{_sidecar()}/invoke/inventory/method/stock/{item}", headers=headers)
    available = _reply_json(stock).get("available", 0)
    if available < quantity:
        return JSONResponse({"item": item, "error": "out of stock"}, status_code=409)

    placed = {"id": f"{next(_order_numbers)}-{_instance}", "item": item, "quantity": quantity}
    saved = await _client.post(
        f"{_sidecar()}/state/{STATE_STORE}",
        json=[{"key": f"order-{placed['id']}", "value": placed}],
        headers=headers,
    )
    if saved.status_code != 204:
        return JSONResponse({**placed, "error": f"not saved: {_reply_json(saved)}"}, status_code=500)
    published = await _client.post(f"{_sidecar()}/publish/{PUBSUB}/{TOPIC}", json=placed, headers=headers)
    if published.status_code != 204:
        return JSONResponse({**placed, "error": f"not published: {_reply_json(published)}"}, status_code=500)
    return JSONResponse(placed, status_code=201)


async def stock(request: Request) -> JSONResponse:
    item = request.path_params["item"]
    if item not in STOCK:
        return JSONResponse({"item": item, "error": "unknown item"}, status_code=404)
    return JSONResponse({"item": item, "available": STOCK[item]})


async def subscriptions(request: Request) -> JSONResponse:
    return JSONResponse([{"pubsubname": PUBSUB, "topic": TOPIC, "route": DELIVERY_ROUTE}])


async def order_placed(request: Request) -> JSONResponse:
    """One delivery of topic `orders`: a CloudEvent whose `data` is the placed order."""
    event = await request.json()
    order = event.get("data") if isinstance(event, dict) else None
    if not isinstance(order, dict) or order.get("item") not in STOCK:
        return JSONResponse({"status": "DROP"})  # never deliverable: retrying cannot help
    item, quantity = order["item"], order.get("quantity", 1)
    if not isinstance(quantity, int) or quantity < 0:
        return JSONResponse({"status": "DROP"})
    STOCK[item] = max(0, STOCK[item] - quantity)
    if STOCK[item] < RESTOCK_BELOW and INITIAL_STOCK[item] > 0:
        STOCK[item] = INITIAL_STOCK[item]
    return JSONResponse({"status": "SUCCESS"})


async def ping(request: Request) -> JSONResponse:
    return JSONResponse({"pong": True})


async def flaky(request: Request) -> JSONResponse:
    """Down in bursts, on the wall clock: every FLAKY_PERIOD s, the first FLAKY_FAILING_SECONDS fail."""
    if int(time.time()) % FLAKY_PERIOD < FLAKY_FAILING_SECONDS:
        return JSONResponse({"error": "flaky: failing for now"}, status_code=500)
    return JSONResponse({"flaky": "ok"})


COMMON = [Route("/ping", ping, methods=["GET"]), Route("/flaky", flaky, methods=["GET"])]

ROUTES = {
    "frontend": [Route("/checkout", checkout, methods=["POST"]), *COMMON],
    "orders": [Route("/orders", create_order, methods=["POST"]), *COMMON],
    "inventory": [
        Route("/stock/{item}", stock, methods=["GET"]),
        Route("/dapr/subscribe", subscriptions, methods=["GET"]),
        Route(DELIVERY_ROUTE, order_placed, methods=["POST"]),
        *COMMON,
    ],
}


def main() -> None:
    app_id = os.environ["APP_ID"]
    app = Starlette(routes=ROUTES[app_id])
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["APP_PORT"]), log_level="warning")


if __name__ == "__main__":
    main()

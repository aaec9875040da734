"""One small demo service, written as an app developer would against Dapr's HTTP API.

Its role comes from its app id: `frontend` takes a checkout and asks `orders`, which asks
`inventory`. Each call goes to its own sidecar (`DAPR_HTTP_PORT`) and passes the incoming
W3C trace headers on, as any traced app does, so the whole checkout is one trace.
"""

from __future__ import annotations

import os

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
STOCK = {"espresso": 12, "croissant": 0, "bagel": 4}


_client = httpx.AsyncClient(timeout=10)
"""One client for the app's lifetime: creating one per request costs tens of milliseconds."""


def _sidecar() -> str:
    return f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0/invoke"


def _trace_headers(request: Request) -> dict[str, str]:
    return {k: request.headers[k] for k in TRACE_HEADERS if k in request.headers}


async def checkout(request: Request) -> JSONResponse:
    order = await request.json()
    reply = await _client.post(
        f"{_sidecar()}/orders/method/orders", json=order, headers=_trace_headers(request)
    )
    return JSONResponse(
        {"checkout": "done" if reply.status_code == 201 else "failed", "order": reply.json()},
        status_code=reply.status_code,
    )


async def create_order(request: Request) -> JSONResponse:
    order = await request.json()
    stock = await _client.get(
        f"{_sidecar()}/inventory/method/stock/{order['item']}", headers=_trace_headers(request)
    )
    available = stock.json().get("available", 0)
    if available < order.get("quantity", 1):
        return JSONResponse({"item": order["item"], "error": "out of stock"}, status_code=409)
    return JSONResponse(
        {"item": order["item"], "quantity": order.get("quantity", 1), "id": 1001}, status_code=201
    )


async def stock(request: Request) -> JSONResponse:
    item = request.path_params["item"]
    if item not in STOCK:
        return JSONResponse({"item": item, "error": "unknown item"}, status_code=404)
    return JSONResponse({"item": item, "available": STOCK[item]})


ROUTES = {
    "frontend": [Route("/checkout", checkout, methods=["POST"])],
    "orders": [Route("/orders", create_order, methods=["POST"])],
    "inventory": [Route("/stock/{item}", stock, methods=["GET"])],
}


def main() -> None:
    app_id = os.environ["APP_ID"]
    app = Starlette(routes=ROUTES[app_id])
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["APP_PORT"]), log_level="warning")


if __name__ == "__main__":
    main()

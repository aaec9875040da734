"""A test subscriber app: declares subscriptions, answers deliveries as told, records them.

Run: python subscriber.py PORT. Environment:
- SUBSCRIBER_SUBSCRIPTIONS: the JSON list `GET /dapr/subscribe` answers (default: none);
- SUBSCRIBER_BEHAVIOUR: JSON object route -> behaviour, for any route not listed "success":
  "success" (`{"status": "SUCCESS"}`), "empty" (200, no body), "text" (200, a plain-text
  body), "drop", "retry", "status:N" (HTTP N), "garbage" (200 with an unknown status),
  "slow:S" (sleep S seconds, then SUCCESS); a suffix "*K" applies it only to the first K
  deliveries of each event id, SUCCESS after that. Batches (`bulkSubscribe`) are recorded
  entry by entry, each answered as its route's behaviour says.
Routes: GET /received (every delivery so far, in order), POST /publish?sidecar=P&pubsub=N
&topic=T (publishes its body through the sidecar on port P, passing the trace context on).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

SUBSCRIPTIONS = json.loads(os.environ.get("SUBSCRIBER_SUBSCRIPTIONS") or "[]")
BEHAVIOUR: dict[str, str] = json.loads(os.environ.get("SUBSCRIBER_BEHAVIOUR") or "{}")
RECEIVED: list[dict[str, Any]] = []
ATTEMPTS: Counter[str] = Counter()


async def subscribe(request: web.Request) -> web.Response:
    return web.json_response(SUBSCRIPTIONS)


async def received(request: web.Request) -> web.Response:
    return web.json_response(RECEIVED)


async def publish(request: web.Request) -> web.Response:
    q = request.query
    url = f"http://127.0.0.1:{q['sidecar']}/v1.0/publish/{q['pubsub']}/{q['topic']}"
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("traceparent", "tracestate")}
    headers["content-type"] = request.headers.get("content-type", "application/json")
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=await request.read(), headers=headers) as reply,
    ):
        return web.Response(status=reply.status, body=await reply.read())


def record(request: web.Request, event: dict[str, Any], batch: int = 0) -> str:
    """Note one delivery; the behaviour that applies to this attempt."""
    event_id = str(event.get("id", ""))
    ATTEMPTS[event_id] += 1
    RECEIVED.append(
        {
            "route": request.path,
            "id": event_id,
            "attempt": ATTEMPTS[event_id],
            "event": event,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "batch": batch,
        }
    )
    behaviour, _, times = BEHAVIOUR.get(request.path, "success").partition("*")
    return "success" if times and ATTEMPTS[event_id] > int(times) else behaviour


async def deliver(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    try:
        event = json.loads(body)
    except ValueError:
        event = {"unparsed": body.decode("utf-8", "replace")}
    if event.get("type") == "com.dapr.event.sent.bulk":
        return deliver_bulk(request, event["entries"])
    name, _, arg = record(request, event).partition(":")
    if name == "slow":
        await asyncio.sleep(float(arg))
    elif name == "empty":
        return web.Response(status=200)
    elif name == "text":
        return web.Response(status=200, text="thanks!")
    elif name == "drop":
        return web.json_response({"status": "DROP"})
    elif name == "retry":
        return web.json_response({"status": "RETRY"})
    elif name == "status":
        return web.Response(status=int(arg), text="as told")
    elif name == "garbage":
        return web.json_response({"status": "MAYBE-LATER"})
    return web.json_response({"status": "SUCCESS"})


def deliver_bulk(request: web.Request, entries: list[dict[str, Any]]) -> web.Response:
    """A batch (`bulkSubscribe`): each entry recorded and answered as its behaviour says
    ("success", "drop", "retry", or "silent": left out of the answer)."""
    statuses = []
    for entry in entries:
        behaviour = record(request, entry["event"], batch=len(entries))
        if behaviour != "silent":
            statuses.append({"entryId": entry["entryId"], "status": behaviour.upper()})
    return web.json_response({"statuses": statuses})


def main() -> None:
    app = web.Application()
    app.router.add_get("/dapr/subscribe", subscribe)
    app.router.add_get("/received", received)
    app.router.add_post("/publish", publish)
    app.router.add_route("*", "/{tail:.*}", deliver)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()

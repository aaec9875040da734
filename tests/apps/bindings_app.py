"""A test app for input bindings: wants some bindings' events, records each one.

Run: python bindings_app.py PORT. Environment:
- BINDINGS_WANTED: JSON list of routes (without the slash) whose `OPTIONS` it answers 200;
  any other route's `OPTIONS` is 404 (the app does not want those events);
- BINDINGS_OPTIONS: JSON object route -> the status its `OPTIONS` answers (overrides the above);
- BINDINGS_BEHAVIOUR: JSON object route -> "ok" (default) or "status:N*K" (answer HTTP N
  to the first K events of that route, 200 after that; without "*K", always N).
Routes: GET /received (every event so far, in order: route, headers, body, status answered).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from typing import Any

from aiohttp import web

WANTED: list[str] = json.loads(os.environ.get("BINDINGS_WANTED") or "[]")
BEHAVIOUR: dict[str, str] = json.loads(os.environ.get("BINDINGS_BEHAVIOUR") or "{}")
OPTIONS: dict[str, int] = json.loads(os.environ.get("BINDINGS_OPTIONS") or "{}")
RECEIVED: list[dict[str, Any]] = []
SEEN: Counter[str] = Counter()


async def received(request: web.Request) -> web.Response:
    return web.json_response(RECEIVED)


def _status(route: str) -> int:
    behaviour = BEHAVIOUR.get(route, "ok")
    if behaviour == "ok":
        return 200
    code, _, times = behaviour.removeprefix("status:").partition("*")
    if times and SEEN[route] > int(times):
        return 200
    return int(code)


async def event(request: web.Request) -> web.Response:
    route = request.match_info["route"]
    if request.method == "OPTIONS":
        return web.Response(status=OPTIONS.get(route) or (200 if route in WANTED else 404))
    SEEN[route] += 1
    status = _status(route)
    RECEIVED.append(
        {
            "route": route,
            "headers": dict(request.headers),
            "body": (await request.read()).decode(errors="replace"),
            "status": status,
        }
    )
    return web.Response(status=status)


def main() -> None:
    app = web.Application()
    app.router.add_get("/received", received)
    app.router.add_route("*", "/{route}", event)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()

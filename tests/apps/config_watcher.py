"""A test app that receives configuration updates and records them.

Run: python config_watcher.py PORT. Every `POST /configuration/{store}/{key}` is recorded
(path, body, the status answered) and answered 200, or with the status in
CONFIG_WATCHER_STATUS (default 200); the first CONFIG_WATCHER_FAIL_FIRST updates (default 0)
are answered 500, to see failed updates sent again.
Routes: GET /received (every update so far, in order).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from aiohttp import web

STATUS = int(os.environ.get("CONFIG_WATCHER_STATUS") or "200")
FAIL_FIRST = int(os.environ.get("CONFIG_WATCHER_FAIL_FIRST") or "0")
RECEIVED: list[dict[str, Any]] = []


async def update(request: web.Request) -> web.Response:
    status = 500 if len(RECEIVED) < FAIL_FIRST else STATUS
    RECEIVED.append(
        {
            "path": request.path,
            "body": json.loads(await request.read()),
            "content_type": request.headers.get("content-type", ""),
            "traceparent": request.headers.get("traceparent", ""),
            "status": status,
        }
    )
    return web.Response(status=status)


async def received(request: web.Request) -> web.Response:
    return web.json_response(RECEIVED)


def main() -> None:
    app = web.Application()
    app.router.add_post("/configuration/{store}/{key:.*}", update)
    app.router.add_get("/received", received)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()

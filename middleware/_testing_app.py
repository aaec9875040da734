"""The app behind a test-kit sidecar: echoes every request and remembers it.

Run as `python -m outrig.middleware._testing_app PORT`. It subscribes to the topic
`orders` of the pubsub `pubsub` (route `/events`), answers every other path with a JSON
echo of the request, and lists everything it received at `GET /_received`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import uvicorn

Scope = dict[str, Any]
TOPIC, PUBSUB, ROUTE = "orders", "pubsub", "/events"


class EchoApp:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/_received":
            await _json(send, 200, self.received)
            return
        if path == "/dapr/subscribe":
            await _json(send, 200, [{"pubsubname": PUBSUB, "topic": TOPIC, "route": ROUTE}])
            return
        seen = {
            "method": scope["method"],
            "path": path,
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            "body": body.decode("utf-8", "replace"),
        }
        self.received.append(seen)
        await _json(send, 200, {"status": "SUCCESS"} if path == ROUTE else seen)


async def _json(send: Any, status: int, value: object) -> None:
    data = json.dumps(value).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


if __name__ == "__main__":
    uvicorn.run(EchoApp(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off")

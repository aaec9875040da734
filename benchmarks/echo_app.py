"""The benchmark's app B: raw ASGI on uvicorn + httptools, echoing the request body.

Kept minimal so the direct baseline measures the network path, not the app.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn


async def read_body(receive: Any) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def serve(asgi_app: Any, port: int, **options: Any) -> None:
    """uvicorn as the sidecar runs it (httptools, uvloop), quiet, no lifespan."""
    uvicorn.run(asgi_app, host="127.0.0.1", port=port, http="httptools", loop="uvloop",
                log_level="warning", access_log=False, lifespan="off", **options)  # fmt: skip


if __name__ == "__main__":
    serve(app, int(sys.argv[1]))

"""The floor of outrig's stack: a bare uvicorn + httptools server forwarding with aiohttp.

No outrig code at all; `invoke.py --floor` runs two of these in place of the sidecars, so
the CPU and latency outrig adds on top of its libraries can be read off.

    python floor_proxy.py LISTEN_PORT TARGET_PORT
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import yarl
from echo_app import read_body, serve  # same folder: scripts run from benchmarks/

TARGET = int(sys.argv[2])
_session: aiohttp.ClientSession | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _session
    if scope["type"] != "http":
        return
    if _session is None:
        _session = aiohttp.ClientSession(
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
    body = await read_body(receive)
    url = yarl.URL.build(
        scheme="http", host="127.0.0.1", port=TARGET, path=scope["raw_path"].decode(), encoded=True
    )
    async with _session.request(scope["method"], url, data=body) as reply:
        data = await reply.read()
    headers = [(b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


if __name__ == "__main__":
    serve(app, int(sys.argv[1]), proxy_headers=False)

"""A test app that reports what it received, answers with any status, and streams big bodies.

Run: python echo.py PORT. Routes:
- /status/{code}: answers `code` with a small body and an `x-echo-status` header;
- /big?size=N: streams N bytes of b"x";
- anything else: JSON of method, path, query, headers, body length and sha256.
"""

from __future__ import annotations

import hashlib
import json
import sys

from aiohttp import web


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.Response(status=code, text=f"status {code} from app", headers={"x-echo-status": str(code)})


async def big(request: web.Request) -> web.StreamResponse:
    size = int(request.query["size"])
    response = web.StreamResponse(headers={"content-type": "application/octet-stream"})
    response.content_length = size
    await response.prepare(request)
    chunk = b"x" * 65536
    sent = 0
    while sent < size:
        part = chunk[: min(len(chunk), size - sent)]
        await response.write(part)
        sent += len(part)
    await response.write_eof()
    return response


async def echo(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    length = 0
    first = b""
    async for chunk in request.content.iter_chunked(65536):
        if not first:
            first = chunk[:64]
        digest.update(chunk)
        length += len(chunk)
    body = {
        "method": request.method,
        "path": request.raw_path.split("?", 1)[0],
        "query": request.raw_path.partition("?")[2],
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "body_length": length,
        "body_sha256": digest.hexdigest(),
        "body_prefix": first.decode("latin-1"),
    }
    return web.Response(text=json.dumps(body), content_type="application/json", headers={"x-echo": "yes"})


def main() -> None:
    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/big", big)
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()

"""A test app that reports what it received, answers with any status, and streams big bodies.

Run: python echo.py PORT. Routes:
- /status/{code}: answers `code` with a small body and an `x-echo-status` header;
- /big?size=N: streams N bytes of b"x";
- /unicode: a response header with non-ASCII text;
- /declared/{code}?length=N: status `code`, no body, `Content-Length: N`;
- /endless: streams until the reader leaves; /active: how many such streams are open;
- /flaky/{n}/{key}: 503 for the first n calls with that key, then 200; /calls/{key} counts;
- /hang?seconds=S: answers after S seconds (default 60);
- anything else: JSON of method, path, query, headers, body length and sha256.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys

from aiohttp import web


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.Response(status=code, text=f"status {code} from app", headers={"x-echo-status": str(code)})


async def unicode_header(request: web.Request) -> web.Response:
    return web.Response(text="ok", headers={"x-euro": "€ and café"})


async def declared(request: web.Request) -> web.Response:
    """A bodiless answer (HEAD, 204, 304) declaring a Content-Length, as caches do."""
    code = int(request.match_info["code"])
    response = web.Response(status=code)
    response.headers["Content-Length"] = request.query.get("length", "0")
    return response


ACTIVE_STREAMS = 0


async def endless(request: web.Request) -> web.StreamResponse:
    """Streams until the reader goes away; /active says how many such streams are open."""
    global ACTIVE_STREAMS
    response = web.StreamResponse()
    await response.prepare(request)
    ACTIVE_STREAMS += 1
    try:
        while True:
            await response.write(b"y" * 16384)
            await asyncio.sleep(0.01)
    finally:
        ACTIVE_STREAMS -= 1


async def active(request: web.Request) -> web.Response:
    return web.Response(text=str(ACTIVE_STREAMS))


async def big(request: web.Request) -> web.StreamResponse:
    size = int(request.query["size"])
    response = web.StreamResponse(headers={"content-type": "application/octet-stream"})
    response.content_length = size
    await response.prepare(request)
    if request.method == "HEAD":  # aiohttp would send what we write, breaking the connection
        return response
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


CALLS: dict[str, int] = {}


async def flaky(request: web.Request) -> web.Response:
    """/flaky/{n}/{key}: 503 for the first n calls with this key, then 200; every call is
    counted (GET /calls/{key} says how many arrived)."""
    key = request.match_info["key"]
    CALLS[key] = CALLS.get(key, 0) + 1
    if CALLS[key] <= int(request.match_info["n"]):
        return web.Response(status=503, text=f"failing call {CALLS[key]}")
    return web.Response(text=f"ok after {CALLS[key]} calls")


async def calls(request: web.Request) -> web.Response:
    return web.Response(text=str(CALLS.get(request.match_info["key"], 0)))


async def hang(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("seconds", "60")))
    return web.Response(text="woke up")


def main() -> None:
    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/big", big)
    app.router.add_get("/unicode", unicode_header)
    app.router.add_route("*", "/declared/{code}", declared)
    app.router.add_get("/endless", endless)
    app.router.add_get("/active", active)
    app.router.add_route("*", "/flaky/{n}/{key}", flaky)
    app.router.add_get("/calls/{key}", calls)
    app.router.add_route("*", "/hang", hang)
    app.router.add_route("*", "/{tail:.*}", echo)
    # A hanging request must not hold the app up for the default 60 s when a test ends.
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, shutdown_timeout=1)


if __name__ == "__main__":
    main()

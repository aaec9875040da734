"""Running several uvicorn servers (app API, peer API) in one event loop.

uvicorn's `Server.serve()` installs its own signal handlers and re-raises the signal when
it ends, which suits one server per process; the sidecar owns signals itself and runs
each server through `startup` / `main_loop` / `shutdown` on sockets it has bound.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl

import uvicorn

from .api.asgi import Receive, Scope, Send

log = logging.getLogger("outrig.servers")


class StartupError(Exception):
    """The sidecar cannot start; the message says why and what to change."""


def bind(host: str, port: int, purpose: str, flag: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise StartupError(
            f"cannot listen on {host}:{port} for the {purpose}: {reason}; choose another port with {flag}"
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class AsgiServer:
    """One uvicorn server on a bound socket; over TLS with `ssl_context` (a live context, so
    certificates loaded into it later serve new handshakes), with `http_protocol` in place
    of uvicorn's httptools protocol (the mTLS peer check, `security.peers`)."""

    def __init__(
        self,
        app: object,
        sock: socket.socket,
        keepalive: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        http_protocol: type[asyncio.Protocol] | None = None,
    ) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            http=http_protocol or "httptools",
            ssl_context_factory=(lambda _config, _default: ssl_context) if ssl_context is not None else None,
            lifespan="off",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            date_header=False,
            log_config=None,
            timeout_keep_alive=int(keepalive),
            timeout_graceful_shutdown=5,
        )
        config.load()
        self.server = uvicorn.Server(config)
        self.server.lifespan = config.lifespan_class(config)
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.server.startup(sockets=[self.sock])
        self._loop_task = asyncio.create_task(self.server.main_loop())

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._loop_task is not None:
            await self._loop_task
            await self.server.shutdown(sockets=[self.sock])
            self._loop_task = None


AsgiApp = object
__all__ = ["AsgiServer", "Receive", "Scope", "Send", "StartupError", "bind"]

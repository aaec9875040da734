"""Where the SPIFFE checks run: once per connection, on both ends.

Server: a subclass of uvicorn's httptools protocol (passed as uvicorn's `http=` class)
reads the peer certificate when the connection is made (after the TLS handshake), refuses
a peer it does not accept (logged with its address and the reason), and puts the
verified identity into every request's ASGI scope under `PEER_IDENTITY`. uvicorn itself
does not expose the peer certificate in the scope. Cost (measured): 2.2 us per connection
(`getpeercert` plus a parse cached by certificate), 0.25 us per request (one dict store),
and one timer per accepted connection, cancelled when its handshake completes, that logs a
handshake that never did.

Connections end with their certificates: a request that arrives after the peer's
certificate expired, or after the connection's maximum age (about one renewal interval),
is answered with `Connection: close` (keep-alive alone closes idle connections only).

Client: an aiohttp connector that checks, for each new connection, that the server is the
sidecar of the app the request is for. The transport passes the target app id as the
request's `server_hostname`, which is part of aiohttp's pool key: a connection checked for
app A is never reused for app B at the same address. A pooled connection goes back to the
pool only while it is younger than the maximum age and the server's certificate is valid.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import weakref
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .spiffe import SpiffeError, SpiffeId
from .tls import PeerVerifier

log = logging.getLogger("outrig.security")

PEER_IDENTITY = "outrig.peer_identity"
"""ASGI scope key: the caller's verified `SpiffeId` (absent without mTLS)."""

expected_app: contextvars.ContextVar[str | None] = contextvars.ContextVar("outrig_expected_app", default=None)
"""The app id an outbound request is meant for, when the request names no `server_hostname`."""

HANDSHAKE_CHECK = 2.0
"""Seconds after accepting a peer connection by which its TLS handshake should be done."""


def verified_protocol(verifier: PeerVerifier) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, accepting only peers `verifier` accepts."""

    class VerifiedPeerProtocol(HttpToolsProtocol):
        _identity: SpiffeId | None = None
        _refused = False
        _close_at = float("inf")

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Made at accept, before the handshake; uvloop does not report a failed handshake
            # (a certificate expired or of another CA), so a timer notices it never finished.
            self._handshake_timer: asyncio.TimerHandle | None = self.loop.call_later(
                HANDSHAKE_CHECK, _handshake_missing
            )

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._cancel_timer()
            try:
                peer = verifier.peer(transport.get_extra_info("ssl_object"))
            except SpiffeError as exc:
                self._refused = True
                log.warning("refused peer connection from %s: %s", _address(transport), exc)
                transport.abort()
                return
            self._identity = peer.identity
            self._close_at = _close_at(verifier, peer.not_after.timestamp())
            super().connection_made(transport)

        def _cancel_timer(self) -> None:
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
                self._handshake_timer = None

        def data_received(self, data: bytes) -> None:
            if not self._refused:
                super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timer()
            if not self._refused:
                super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope[PEER_IDENTITY] = self._identity  # type: ignore[literal-required]

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            if time.time() >= self._close_at and self.cycle is not None:
                self.cycle.keep_alive = False  # answered with `Connection: close`

    return VerifiedPeerProtocol


def _close_at(verifier: PeerVerifier, not_after: float) -> float:
    """Wall-clock time after which a connection takes no further request: the peer
    certificate's end or the maximum connection age, whichever comes first."""
    age = verifier.max_connection_age
    return min(not_after, time.time() + age) if age is not None else not_after


def _handshake_missing() -> None:
    log.warning(
        "a peer connection was accepted but did not complete its TLS handshake within %.0fs: OpenSSL "
        "refused it (a client certificate expired, not yet valid, or not from this trust domain's CA; "
        "or not TLS 1.3), or the peer is slow or went away",
        HANDSHAKE_CHECK,
    )


def _address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "an unknown address"


class PeerIdentityError(aiohttp.ClientError):
    """The server is not the sidecar the request is for; nothing was sent to it."""


class SpiffeConnector(aiohttp.TCPConnector):
    """A TCP connector whose new TLS connections must belong to the expected app's sidecar
    (the request's `server_hostname`, else `expected_app`), and whose pooled connections end
    with the server's certificate or the verifier's maximum connection age."""

    def __init__(self, verifier: PeerVerifier, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._verifier = verifier
        self._close_at: weakref.WeakKeyDictionary[ResponseHandler, float] = weakref.WeakKeyDictionary()

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109
        protocol = await super()._create_connection(req, traces, timeout)
        transport = protocol.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        try:
            peer = self._verifier.peer(ssl_object, req.server_hostname or expected_app.get())
        except SpiffeError as exc:
            protocol.close()
            raise PeerIdentityError(str(exc)) from None
        self._close_at[protocol] = _close_at(self._verifier, peer.not_after.timestamp())
        return protocol

    def _release(self, key: Any, protocol: ResponseHandler, *, should_close: bool = False) -> None:
        if not should_close and time.time() >= self._close_at.get(protocol, float("inf")):
            should_close = True
        super()._release(key, protocol, should_close=should_close)

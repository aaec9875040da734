"""Sending a Call as an HTTP request (aiohttp) and reading the answer back as a Result.

One shared client session serves both outbound hops (to peer sidecars and to the app).
aiohttp's client is used on this hot path because it holds its throughput under
concurrency where httpx's does not (encode/httpx#3215; measured in the README).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Iterable

import aiohttp
import yarl
from multidict import CIMultiDict

from outrig.middleware import Call, CallError, Result, Stream

from .security.peers import PeerIdentityError, SpiffeConnector
from .security.tls import PeerVerifier

log = logging.getLogger("outrig.transport")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)
"""Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1), plus
`Expect`: the body has already been read from the caller, so a `100-continue` asked of
the next hop could only make it wait. Headers a `Connection` header names go too."""

HEADER_CODEC = ("utf-8", "surrogateescape")
"""How header bytes become text and back, at every edge, so they pass through unchanged
(aiohttp parses with the same codec and writes text as UTF-8)."""

BUFFER_LIMIT = 1 << 20
"""Bodies declared at most this large are read whole; larger or unsized ones are streamed."""

CHUNK_SIZE = 1 << 16


def connection_tokens(value: str) -> set[str]:
    """The header names a `Connection` header lists (they describe this hop only)."""
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def forwardable(headers: Iterable[tuple[str, str]]) -> CIMultiDict[str]:
    pairs = list(headers)
    drop = set(HOP_BY_HOP)
    for key, value in pairs:
        if key.lower() == "connection":
            drop |= connection_tokens(value)
    return CIMultiDict((k, v) for k, v in pairs if k.lower() not in drop)


def bodiless(verb: str, status: int) -> bool:
    """Responses that never carry a body, whatever their Content-Length says."""
    return verb == "HEAD" or status in (204, 304) or 100 <= status < 200


class ConnectFailedError(CallError):
    """Nothing was sent: the next hop refused or could not be reached (safe to retry)."""


class HttpTransport:
    """Calls over HTTP, or over mTLS when given a client context and a verifier: then each
    new connection must be to the sidecar of the call's target app (its SPIFFE ID). The
    target app id is the request's TLS `server_hostname`, part of aiohttp's pool key, so a
    connection verified for one app is never reused for another at the same address."""

    def __init__(
        self,
        connect_timeout: float = 5.0,
        keepalive_timeout: float = 4.0,
        tls: tuple[ssl.SSLContext, PeerVerifier] | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._keepalive_timeout = keepalive_timeout
        self._tls = tls
        self._scheme = "https" if tls is not None else "http"
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector: aiohttp.TCPConnector
        if self._tls is not None:
            context, verifier = self._tls
            connector = SpiffeConnector(
                verifier, limit=1024, keepalive_timeout=self._keepalive_timeout, ssl=context
            )
        else:
            connector = aiohttp.TCPConnector(limit=1024, keepalive_timeout=self._keepalive_timeout)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, host: str, port: int, path: str, call: Call, failure: str) -> Result:
        """Send `call` to http://host:port/path; `failure` prefixes the error if it cannot."""
        assert self._session is not None, "transport not started"
        url = yarl.URL.build(
            scheme=self._scheme, host=host, port=port, path=path, query_string=call.query, encoded=True
        )
        headers = call.metadata
        data: bytes | AsyncIterator[bytes]
        if isinstance(call.body, bytes):
            data = call.body
        else:
            data = _chunks_of(call.body)
            if call.body.length is not None:
                headers = CIMultiDict(headers)
                headers["Content-Length"] = str(call.body.length)
        try:
            response = await self._session.request(
                call.verb, url, headers=headers, data=data, allow_redirects=False,
                server_hostname=call.target if self._tls is not None else None,
            )  # fmt: skip
        except UnicodeError:
            # The target app id is the TLS server name: one with an empty label cannot be.
            raise CallError(
                "ERR_DIRECT_INVOKE", f"{failure}: app id {call.target!r} is not a valid TLS server name", 400
            ) from None
        except (aiohttp.ClientConnectorError, PeerIdentityError) as exc:
            if isinstance(exc, aiohttp.ClientSSLError | PeerIdentityError):
                log.warning("mTLS to %s:%d failed: %s", host, port, _describe(exc))
            raise ConnectFailedError("ERR_DIRECT_INVOKE", f"{failure}: {_describe(exc)}", 500) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if self._tls is not None and isinstance(exc.__cause__ or exc, ssl.SSLError | ConnectionError):
                log.warning("mTLS to %s:%d failed: %s", host, port, _describe(exc))
            raise CallError("ERR_DIRECT_INVOKE", f"{failure}: {_describe(exc)}", 500) from exc
        result_headers = forwardable(response.headers.items())
        length = response.content_length
        if bodiless(call.verb, response.status):
            # Keep the declared length as it is (for HEAD it describes the GET's body).
            if length is not None:
                result_headers["Content-Length"] = str(length)
            response.release()
            return Result(response.status, result_headers, b"")
        if length is not None and length <= BUFFER_LIMIT:
            try:
                body = await response.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise CallError("ERR_DIRECT_INVOKE", f"{failure}: {_describe(exc)}", 500) from exc
            finally:
                response.release()
            return Result(response.status, result_headers, body)
        return Result(response.status, result_headers, Stream(_response_chunks(response), length))


async def _chunks_of(stream: Stream) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk


async def _response_chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_chunked(CHUNK_SIZE):
            yield chunk
    finally:
        response.close() if not response.content.at_eof() else response.release()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed ({exc.os_error})"
    if isinstance(exc, PeerIdentityError):
        return f"peer identity refused ({exc})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connection refused or unreachable ({exc.os_error.strerror or exc.os_error})"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

"""`bindings.http`: HTTP requests to `url`, as Dapr's output binding (bindings/http/http.go).

The operation is the verb (`get`, `head`, `post`, `put`, `patch`, `delete`, `options`,
`trace`; `create` is `post`); request metadata `path` is appended to the url (a `..`
segment is refused, so a request cannot leave the base URL). As in Dapr, only metadata
keys that start with a capital letter are sent as headers (plus the trace context), a body
is sent only for PUT/POST/PATCH (`Content-Type: application/json; charset=utf-8` unless
set), `Accept: application/json; charset=utf-8` is sent unless set, and `errorIfNot2XX`
(default true, per request too) makes any answer that is not 2xx an error. The answer's
body is the data (at most `maxResponseBodySize`, default 100Mi; larger is an error, where
Dapr silently truncates); its metadata holds `statusCode`, `status` and the response
headers (repeated ones joined with ", "). Errors name the URL as scheme://host:port/path
only: never its user info or query, which may carry credentials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from importlib.util import find_spec
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..metadata import MetadataError, duration_seconds, flag, text
from .base import BindingError, BindingRequest, BindingRequestError, BindingResponse

VERBS = ("get", "head", "post", "put", "patch", "delete", "options", "trace")
WITH_BODY = ("PUT", "POST", "PATCH")
TRACE_KEYS = ("traceparent", "tracestate", "baggage")
TRUTHY = {"1", "true", "t", "y", "yes", "on"}
FALSY = {"0", "false", "f", "n", "no", "off"}
JSON_UTF8 = "application/json; charset=utf-8"
DEFAULT_MAX_BODY = 100 * 1024**2
CHUNK = 64 * 1024
HAS_BROTLI = any(find_spec(name) for name in ("brotli", "brotlicffi"))
DECOMPRESSED = ("gzip", "x-gzip", "deflate", *(("br",) if HAS_BROTLI else ()))
"""Encodings aiohttp decodes: the answer then drops Content-Encoding and Content-Length."""
UNSUPPORTED = ("MTLSRootCA", "MTLSClientCert", "MTLSClientKey")
_QUANTITY = re.compile(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", re.ASCII)
_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}  # fmt: skip


def quantity(metadata: Mapping[str, Any], name: str, default: int) -> int:
    """A size as Kubernetes writes it (`100Mi`, `1Gi`, `500k`, `2048`), as Dapr's metadata takes."""
    raw = metadata.get(name)
    if raw in (None, ""):
        return default
    found = _QUANTITY.fullmatch(str(raw).strip())
    if found is None:
        raise MetadataError(name, raw, f"{name} must be a size", 'e.g. "100Mi", "1Gi" or "65536"')
    return int(found.group(1)) * _UNITS[found.group(2)]


def safe_url(url: str) -> str:
    """scheme://host:port/path of a URL: no user info, query or fragment (they may hold secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _reason(exc: BaseException) -> str:
    """Why a request failed, without aiohttp's text (some of it repeats the full URL)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    return type(exc).__name__


class HttpBinding:
    operations = (*VERBS, "create")

    def __init__(
        self,
        url: str,
        timeout: float,
        error_if_not_2xx: bool,
        max_body: int = DEFAULT_MAX_BODY,
        token_header: str = "",
        token: str = "",
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.error_if_not_2xx = error_if_not_2xx
        self.max_body = max_body
        self.token_header, self.token = token_header, token
        parts = urlsplit(url)
        self.span_attributes: Mapping[str, str | int] = {
            "server.address": parts.hostname or "",
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        }
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any]) -> HttpBinding:
        url = text(metadata, "url", required_hint="the base URL requests go to, e.g. http://host:8080/api")
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise MetadataError(
                "url", safe_url(url), "url must be an http:// or https:// URL with a host", None
            )
        for key in UNSUPPORTED:
            if metadata.get(key) not in (None, ""):
                raise MetadataError(
                    key, "<set>", f"{key} (mutual TLS) is not supported by bindings.http yet",
                    "remove it, or put a TLS-terminating proxy in front of the server",
                )  # fmt: skip
        error_if_not_2xx = flag(metadata, "errorIfNot2XX", default=True)
        token_header = text(metadata, "securityTokenHeader")
        token = text(metadata, "securityToken")
        if bool(token) != bool(token_header):
            raise MetadataError(
                "securityTokenHeader" if token else "securityToken", "<unset>",
                "securityToken and securityTokenHeader go together", "set both, or neither",
            )  # fmt: skip
        return cls(
            url, duration_seconds(metadata, "responseTimeout", 60.0), error_if_not_2xx,
            quantity(metadata, "maxResponseBodySize", DEFAULT_MAX_BODY), token_header, token,
        )  # fmt: skip

    def _target(self, path: str) -> str:
        if not path:
            return self.url
        if ".." in path.split("?", 1)[0].split("#", 1)[0].replace("\\", "/").split("/"):
            raise BindingRequestError(f"metadata.path {path!r} has a '..' segment; name a path under the url")
        return self.url + "/" + path.lstrip("/")

    def _headers(self, request: BindingRequest, verb: str) -> dict[str, str]:
        """Dapr's order: defaults, the security token, then capitalised metadata keys, then trace."""
        headers = {"Accept": JSON_UTF8}
        if verb in WITH_BODY:
            headers["Content-Type"] = JSON_UTF8
        if self.token_header:
            headers[self.token_header] = self.token
        for key, value in request.metadata.items():
            if "A" <= key[:1] <= "Z" or key in TRACE_KEYS:
                if "\r" in value or "\n" in value or "\r" in key or "\n" in key:
                    raise BindingRequestError(f"metadata.{key}: a header cannot contain CR or LF characters")
                headers = {k: v for k, v in headers.items() if k.lower() != key.lower()}
                headers[key] = value
        return headers

    def _error_if_not_2xx(self, request: BindingRequest) -> bool:
        value = request.metadata.get("errorIfNot2XX", "")
        if not value:
            return self.error_if_not_2xx
        if value.strip().lower() in TRUTHY | FALSY:  # Dapr's IsTruthy words
            return value.strip().lower() in TRUTHY
        raise BindingRequestError(f"metadata.errorIfNot2XX must be true or false, got {value!r}")

    async def invoke(self, request: BindingRequest) -> BindingResponse:
        verb = "POST" if request.operation == "create" else request.operation.upper()
        url = self._target(request.metadata.get("path", ""))
        headers = self._headers(request, verb)
        strict = self._error_if_not_2xx(request)
        where = f"{verb} {safe_url(url)}"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        body = request.data if verb in WITH_BODY else None
        try:
            async with self._session.request(verb, url, data=body, headers=headers) as reply:
                status = reply.status
                data = await self._read(reply, where)
                answer: dict[str, str] = {}
                for key in reply.headers:
                    if key not in answer:
                        answer[key] = ", ".join(reply.headers.getall(key))
                if reply.headers.get("Content-Encoding", "").lower() in DECOMPRESSED:
                    answer = {k: v for k, v in answer.items()
                              if k.lower() not in ("content-encoding", "content-length")}  # fmt: skip
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BindingError(f"{where}: {_reason(exc)}") from None
        except ValueError:  # aiohttp refuses a header it cannot send
            raise BindingRequestError(f"{where}: a request header in metadata is not valid") from None
        if strict and not 200 <= status < 300:
            raise BindingError(f"{where}: received status code {status}")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        return BindingResponse(
            data, {**answer, "statusCode": str(status), "status": f"{status} {phrase}".strip()}
        )

    async def _read(self, reply: aiohttp.ClientResponse, where: str) -> bytes:
        too_big = f"{where}: the response body is larger than maxResponseBodySize ({self.max_body} bytes)"
        if (
            reply.content_length is not None
            and reply.content_length > self.max_body
            and (not reply.headers.get("Content-Encoding"))
        ):
            raise BindingError(too_big)
        chunks: list[bytes] = []
        size = 0
        async for chunk in reply.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > self.max_body:
                raise BindingError(too_big)
            chunks.append(chunk)
        return b"".join(chunks)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

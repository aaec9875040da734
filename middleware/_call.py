"""The protocol-neutral call model every building-block operation is turned into.

Adapters (HTTP, gRPC, broker deliveries) build a `Call`, run it through a pipeline and
turn the `Result` back into their own wire format, so one middleware serves them all.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from multidict import CIMultiDict

from ._errors import CallError


@dataclass(slots=True)
class Stream:
    """A payload passed along chunk by chunk, so a large body never sits whole in memory."""

    chunks: AsyncIterable[bytes]
    length: int | None = None
    """The total size when the sender declared it (Content-Length), else None."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunks.__aiter__()

    async def aclose(self) -> None:
        """Close the source (an upstream response, say) when the reader stops early."""
        close = getattr(self.chunks, "aclose", None)
        if close is not None:
            await close()


Body = bytes | Stream
"""A payload: bytes when small or already read, a `Stream` of chunks otherwise."""


class Hop(enum.StrEnum):
    """Where in the mesh a call is being handled."""

    APP_API = "app-api"
    """App -> its own sidecar (Dapr's HTTP/gRPC API)."""
    PEER = "peer"
    """Sidecar -> sidecar, handled by the callee's sidecar."""
    APP_CHANNEL = "app-channel"
    """Sidecar -> its own app (invocations and deliveries)."""
    COMPONENT = "component"
    """Sidecar -> one of its components (a state store, a broker)."""


@dataclass(slots=True)
class Call:
    """One building-block operation on its way through a pipeline.

    `block` and `operation` say what is asked ("invoke"/"invoke", later "state"/"get",
    "pubsub"/"publish"); `target` names the app id or component, `subject` the method,
    key or topic. `route` is the low-cardinality template of the entry point, safe to use
    as a metric label or span name.
    """

    block: str
    operation: str
    target: str
    subject: str
    hop: Hop
    route: str
    metadata: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: Body = b""
    verb: str = "POST"
    """The HTTP verb for invocations (gRPC invocations carry one too, as Dapr's do)."""
    query: str = ""
    caller: str | None = None
    """The calling app id, once known (from the peer sidecar or its mTLS identity)."""
    identity: str | None = None
    """The caller's SPIFFE ID (`spiffe://<trust-domain>/ns/<namespace>/<app-id>`), set only
    when mTLS verified it; None on unauthenticated hops."""
    request: Any = None
    """The parsed request of building blocks other than invocation (for state, the items
    to save or the keys to read), the same whichever API (HTTP, gRPC) it came in by."""
    attributes: dict[str, Any] = field(default_factory=dict)
    """Facts about this call recorded on its span (semantic-convention names), set by the
    adapter and by middleware before the tracing layer starts the span."""
    links: Sequence[Mapping[str, str]] = ()
    """Trace contexts this call's span links to, as W3C carriers (`traceparent`,
    `tracestate`): the messages of a batch delivered at once, say."""

    async def read(self) -> bytes:
        """Drain a streamed body into bytes (and keep it), for middleware that must see it."""
        if not isinstance(self.body, bytes):
            self.body = await _drain(self.body)
        return self.body


@dataclass(slots=True)
class Result:
    """What a call produced: an HTTP-like status, headers and a body, or an error value."""

    status: int = 200
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: Body = b""
    error: CallError | None = None
    value: Any = None
    """The answer of building blocks other than invocation, before an adapter renders it."""

    async def read(self) -> bytes:
        """Drain a streamed body into bytes (and keep it)."""
        if not isinstance(self.body, bytes):
            self.body = await _drain(self.body)
        return self.body

    @classmethod
    def from_error(cls, error: CallError) -> Result:
        return cls(status=error.status, error=error)


async def _drain(stream: Stream) -> bytes:
    parts = [chunk async for chunk in stream]
    return b"".join(parts)


Next = Callable[[Call], Awaitable[Result]]
"""The rest of the chain, as seen from one middleware."""


class Middleware(Protocol):
    """One link of a pipeline: look at the call, maybe change it, call the rest, return."""

    async def __call__(self, call: Call, call_next: Next) -> Result: ...


async def iterate(body: Body) -> AsyncIterator[bytes]:
    """Iterate any body as chunks (a bytes body is one chunk, none when empty)."""
    if isinstance(body, bytes):
        if body:
            yield body
        return
    async for chunk in body:
        yield chunk

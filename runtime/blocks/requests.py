"""Requests decoded from the call's body by the block, after the pipeline has run.

An HTTP adapter reads the body before the pipeline, but decodes it only when the block
gets the call: a middleware that rewrites bodies (Dapr's `middleware.http.uppercase`, a
plugin) then changes what is saved or published, as it does in Dapr, and a malformed body
is refused inside the pipeline, so its span records the 400. Adapters whose requests are
already structured (gRPC) set `call.request` to the decoded value directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from outrig.middleware import Call


@dataclass(frozen=True)
class FromBody:
    decode: Callable[[Call, bytes], Any]
    """Builds the request from the call and its (final) body; raises CallError if malformed."""


async def request_of(call: Call) -> Any:
    """The call's request, decoding it from the body first if the adapter deferred that."""
    if isinstance(call.request, FromBody):
        call.request = call.request.decode(call, await call.read())
    return call.request

"""Folding middleware into a chain, once, and swapping it atomically on reload."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from ._call import Call, Middleware, Next, Result
from ._errors import ERR_INTERNAL, CallError

log = logging.getLogger("outrig.middleware")


def fold(middleware: Sequence[Middleware], endpoint: Next) -> Next:
    """`endpoint` wrapped in `middleware` (`middleware[0]` outermost), as one callable."""
    handler = endpoint
    for link in reversed(middleware):
        handler = functools.partial(link.__call__, call_next=handler)
    return handler


class Pipeline:
    """A chain of middleware in front of an endpoint, built once and called per request.

    `middleware[0]` is outermost. `replace()` swaps the whole chain in one assignment, so
    a request in flight finishes on the chain it started with.
    """

    __slots__ = ("_handler", "middleware")

    def __init__(self, middleware: Sequence[Middleware], endpoint: Next) -> None:
        self.middleware: tuple[Middleware, ...] = ()
        self._handler: Next = endpoint
        self.replace(middleware, endpoint)

    def replace(self, middleware: Sequence[Middleware], endpoint: Next) -> None:
        self.middleware = tuple(middleware)
        self._handler = fold(middleware, endpoint)

    async def __call__(self, call: Call) -> Result:
        return await self._handler(call)


class ErrorMapping:
    """The outermost layer: any failure below becomes a `Result` carrying a `CallError`.

    A `CallError` passes as it is, named after the call's block and target when it has a
    Dapr reason (the `ResourceInfo` HTTP bodies and gRPC statuses carry); anything else
    is a bug somewhere below and becomes a 500 `ERR_INTERNAL` naming the exception, logged
    with its traceback, so one bad request or plugin never takes the sidecar down.
    """

    async def __call__(self, call: Call, call_next: Next) -> Result:
        try:
            result = await call_next(call)
        except CallError as error:
            return Result.from_error(error.located(call.block, call.target))
        except Exception as exc:
            log.exception("unhandled error in %s/%s to %s", call.block, call.operation, call.target)
            return Result.from_error(
                CallError(ERR_INTERNAL, f"internal error: {type(exc).__name__}: {exc}", 500)
            )
        if result.error is not None:
            result.error = result.error.located(call.block, call.target)
        return result

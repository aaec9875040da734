"""A configured middleware, kept from taking the sidecar down with it.

A plugin that raises, stalls or answers something that is not a `Result` fails only the
call it was handling, with an error that names it; other calls keep flowing. The time
limit counts the plugin's own time only: the clock stops while the rest of the chain
runs (`asyncio.Timeout.reschedule`), so a slow app never makes a plugin look hung.
"""

from __future__ import annotations

import asyncio
import logging

from ._call import Call, Middleware, Next, Result
from ._errors import ERR_MIDDLEWARE, CallError
from ._lifecycle import MiddlewareContext, Startable, Stoppable

log = logging.getLogger("outrig.middleware")

DEFAULT_OWN_TIME_LIMIT = 10.0
"""Seconds a plugin may spend on one call outside the rest of the chain."""


class Guarded:
    """`inner` as configured under `name`, with its failures turned into named errors."""

    __slots__ = ("inner", "name", "own_time_limit", "type_name")

    def __init__(
        self,
        name: str,
        type_name: str,
        inner: Middleware,
        own_time_limit: float | None = DEFAULT_OWN_TIME_LIMIT,
    ) -> None:
        self.name = name
        self.type_name = type_name
        self.inner = inner
        self.own_time_limit = own_time_limit

    async def __call__(self, call: Call, call_next: Next) -> Result:
        raised: list[BaseException] = []
        loop = asyncio.get_running_loop()
        limit = self.own_time_limit
        clock = asyncio.timeout_at(None if limit is None else loop.time() + limit)

        async def rest(forwarded: Call) -> Result:
            clock.reschedule(None)
            try:
                return await call_next(forwarded)
            except BaseException as exc:
                raised.append(exc)
                raise
            finally:
                if limit is not None:
                    clock.reschedule(loop.time() + limit)

        try:
            async with clock:
                result = await self.inner(call, rest)
        except CallError:
            raise
        except TimeoutError as exc:
            if not clock.expired() or exc in raised:
                raise
            raise self._failure(f"did not finish within {limit:g}s of its own time", 504) from None
        except Exception as exc:
            if exc in raised:
                raise
            log.exception("middleware %s (%s) raised on %s/%s", self.name, self.type_name,
                          call.block, call.operation)  # fmt: skip
            raise self._failure(f"raised {type(exc).__name__}: {exc}", 500) from None
        if not isinstance(result, Result):
            raise self._failure(f"returned {type(result).__name__}, not a Result", 500)
        return result

    def _failure(self, what: str, status: int) -> CallError:
        return CallError(ERR_MIDDLEWARE, f"middleware {self.name!r} ({self.type_name}) {what}", status)

    async def start(self, context: MiddlewareContext) -> None:
        if isinstance(self.inner, Startable):
            await self.inner.start(context)

    async def stop(self) -> None:
        if isinstance(self.inner, Stoppable):
            await self.inner.stop()

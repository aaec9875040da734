"""Dapr's `middleware.http.uppercase`: upper-cases the request body (a test aid in Dapr)."""

from __future__ import annotations

from dataclasses import dataclass

from ._call import Call, Next, Result


class Uppercase:
    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Config) -> None:
        self.config = config

    async def __call__(self, call: Call, call_next: Next) -> Result:
        call.body = (await call.read()).upper()
        return await call_next(call)

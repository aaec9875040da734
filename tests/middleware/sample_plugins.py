"""Plugins used by the test-kit tests; the kit registers them for a sidecar by entry point."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from opentelemetry import trace

from outrig.middleware import Call, Next, Result


class Misbehaves:
    """Raises, stalls or answers garbage when the method says so; passes everything else."""

    own_time_limit = 1.0

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Config) -> None:
        self.config = config

    async def __call__(self, call: Call, call_next: Next) -> Result:
        if call.subject == "raise":
            raise RuntimeError("plugin bug")
        if call.subject == "hang":
            await asyncio.sleep(3600)
        if call.subject == "garbage":
            return None  # type: ignore[return-value]
        return await call_next(call)


class Tags:
    """Adds a header and a span attribute: what a plugin sees, proved by what it writes."""

    @dataclass(frozen=True)
    class Config:
        tag: str
        limit: int = 3

    def __init__(self, config: Config) -> None:
        self.config = config

    async def __call__(self, call: Call, call_next: Next) -> Result:
        trace.get_current_span().set_attribute("test.tag", self.config.tag)
        seen = f"{self.config.tag}:{call.block}/{call.operation}/{call.hop}"
        previous = call.metadata.get("x-tag")
        call.metadata["x-tag"] = f"{previous},{seen}" if previous else seen
        return await call_next(call)

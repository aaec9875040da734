"""`middleware.outrig.headers`: adds a value to a request header, and optionally a response one.

Appending (rather than setting) makes the order of several handlers visible to the app,
which is how the pipeline's ordering is shown and tested.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._call import Call, Next, Result


class Headers:
    @dataclass(frozen=True)
    class Config:
        requestHeader: str  # noqa: N815 - Dapr metadata names are camelCase
        value: str
        responseHeader: str = ""  # noqa: N815

    def __init__(self, config: Config) -> None:
        self.config = config

    async def __call__(self, call: Call, call_next: Next) -> Result:
        name, value = self.config.requestHeader, self.config.value
        previous = call.metadata.get(name)
        call.metadata[name] = f"{previous},{value}" if previous else value
        result = await call_next(call)
        if self.config.responseHeader:
            result.headers.add(self.config.responseHeader, value)
        return result

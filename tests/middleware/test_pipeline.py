"""The pipeline core: order, short-circuit, error mapping, atomic replacement."""

from __future__ import annotations

from outrig.middleware import Call, CallError, ErrorMapping, Hop, Next, Pipeline, Result


def make_call(**overrides: object) -> Call:
    fields: dict[str, object] = {
        "block": "invoke",
        "operation": "invoke",
        "target": "b",
        "subject": "m",
        "hop": Hop.APP_API,
        "route": "/r",
    }
    fields.update(overrides)
    return Call(**fields)  # type: ignore[arg-type]


class Record:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def __call__(self, call: Call, call_next: Next) -> Result:
        self.log.append(f"in:{self.name}")
        result = await call_next(call)
        self.log.append(f"out:{self.name}")
        return result


async def test_middleware_runs_outermost_first_and_unwinds_in_reverse() -> None:
    log: list[str] = []

    async def endpoint(call: Call) -> Result:
        log.append("endpoint")
        return Result(201)

    pipeline = Pipeline([Record("a", log), Record("b", log)], endpoint)
    assert (await pipeline(make_call())).status == 201
    assert log == ["in:a", "in:b", "endpoint", "out:b", "out:a"]


async def test_a_middleware_can_short_circuit() -> None:
    class Deny:
        async def __call__(self, call: Call, call_next: Next) -> Result:
            raise CallError("ERR_DENIED", "no", 403)

    async def endpoint(call: Call) -> Result:
        raise AssertionError("must not be reached")

    result = await Pipeline([ErrorMapping(), Deny()], endpoint)(make_call())
    assert result.status == 403
    assert result.error is not None and result.error.to_json() == {"errorCode": "ERR_DENIED", "message": "no"}


async def test_unexpected_exceptions_become_internal_errors() -> None:
    async def endpoint(call: Call) -> Result:
        raise ZeroDivisionError("boom")

    result = await Pipeline([ErrorMapping()], endpoint)(make_call())
    assert result.status == 500
    assert result.error is not None and result.error.code == "ERR_INTERNAL"
    assert "ZeroDivisionError: boom" in result.error.message


async def test_replace_swaps_the_whole_chain() -> None:
    log: list[str] = []

    async def endpoint(call: Call) -> Result:
        return Result(200)

    pipeline = Pipeline([Record("old", log)], endpoint)
    pipeline.replace([Record("new", log)], endpoint)
    await pipeline(make_call())
    assert log == ["in:new", "out:new"]

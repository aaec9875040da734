"""A configured middleware that raises, stalls or answers garbage fails only its own call."""

from __future__ import annotations

import asyncio

import pytest

from outrig.middleware import Call, CallError, Next, Result
from outrig.middleware._guard import Guarded
from outrig.middleware.testing import Recorder, make_call, run


class Raises:
    async def __call__(self, call: Call, call_next: Next) -> Result:
        raise KeyError("boom")


class Stalls:
    async def __call__(self, call: Call, call_next: Next) -> Result:
        await asyncio.sleep(3600)
        return await call_next(call)


class Garbage:
    async def __call__(self, call: Call, call_next: Next) -> Result:
        return "not a result"  # type: ignore[return-value]


class PassThrough:
    async def __call__(self, call: Call, call_next: Next) -> Result:
        return await call_next(call)


@pytest.mark.parametrize(
    ("plugin", "status", "says"),
    [
        (Raises(), 500, "raised KeyError: 'boom'"),
        (Stalls(), 504, "did not finish within 0.2s of its own time"),
        (Garbage(), 500, "returned str, not a Result"),
    ],
)
async def test_a_misbehaving_plugin_fails_its_call_with_an_error_naming_it(
    plugin: object, status: int, says: str
) -> None:
    rest = Recorder()
    guarded = Guarded("audit", "middleware.test.bad", plugin, own_time_limit=0.2)  # type: ignore[arg-type]
    with pytest.raises(CallError) as failed:
        await guarded(make_call(), rest)
    assert failed.value.status == status
    assert failed.value.code == "ERR_MIDDLEWARE"
    assert failed.value.message == f"middleware 'audit' (middleware.test.bad) {says}"


async def test_time_spent_in_the_rest_of_the_chain_does_not_count() -> None:
    async def slow_app(call: Call) -> Result:
        await asyncio.sleep(0.3)
        return Result(status=201)

    guarded = Guarded("p", "t", PassThrough(), own_time_limit=0.1)
    assert (await guarded(make_call(), slow_app)).status == 201


async def test_errors_from_the_rest_of_the_chain_pass_through_unchanged() -> None:
    async def failing(call: Call) -> Result:
        raise TimeoutError("downstream")

    with pytest.raises(TimeoutError, match="downstream"):
        await Guarded("p", "t", PassThrough(), own_time_limit=5)(make_call(), failing)

    async def refusing(call: Call) -> Result:
        raise CallError("ERR_X", "no", 409)

    with pytest.raises(CallError, match="no"):
        await Guarded("p", "t", PassThrough())(make_call(), refusing)


async def test_other_calls_keep_flowing_while_one_plugin_call_stalls() -> None:
    class StallsOnce:
        def __init__(self) -> None:
            self.first = True

        async def __call__(self, call: Call, call_next: Next) -> Result:
            if self.first:
                self.first = False
                await asyncio.sleep(3600)
            return await call_next(call)

    guarded = Guarded("p", "t", StallsOnce(), own_time_limit=0.5)
    stalled = asyncio.ensure_future(guarded(make_call(), Recorder()))
    await asyncio.sleep(0)
    answers = await asyncio.gather(*(guarded(make_call(), Recorder()) for _ in range(20)))
    assert [a.status for a in answers] == [200] * 20
    with pytest.raises(CallError, match="did not finish"):
        await stalled


async def test_the_kit_runs_a_plugin_as_the_sidecar_does_errors_become_results() -> None:
    result = await run(Raises())
    assert result.status == 500
    assert result.error is not None and "raised KeyError" in result.error.message

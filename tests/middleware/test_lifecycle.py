"""Optional start/stop hooks: started in order with their own names, stopped even if one fails."""

from __future__ import annotations

import pytest

from outrig.middleware import Call, MiddlewareContext, Next, Result
from outrig.middleware._lifecycle import start_all, stop_all


class Hooked:
    def __init__(self, log: list[str], fail_stop: bool = False) -> None:
        self.log = log
        self.fail_stop = fail_stop

    async def __call__(self, call: Call, call_next: Next) -> Result:
        return await call_next(call)

    async def start(self, context: MiddlewareContext) -> None:
        self.log.append(f"start {context.name} for {context.app_id}")

    async def stop(self) -> None:
        self.log.append("stop")
        if self.fail_stop:
            raise RuntimeError("cannot stop")


class Plain:
    async def __call__(self, call: Call, call_next: Next) -> Result:
        return await call_next(call)


async def test_hooks_run_in_order_and_a_failing_stop_does_not_stop_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    links = [("a", Hooked(log, fail_stop=True)), ("plain", Plain()), ("b", Hooked(log))]
    await start_all(links, MiddlewareContext("app", ""))
    await stop_all(m for _, m in links)
    assert log == ["start a for app", "start b for app", "stop", "stop"]
    assert "middleware Hooked failed to stop" in caplog.text

"""The plugin author's test kit, used as an author would: unit runs and a real sidecar."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest

from outrig.middleware import Call, PluginError, Result
from outrig.middleware.testing import (
    PluginSidecar,
    Recorder,
    capture_spans,
    configure,
    make_call,
    plugin_sidecar,  # noqa: F401 - the fixture, as an author's conftest.py imports it
    run,
)
from tests.middleware.sample_plugins import Misbehaves, Tags


def test_configure_validates_like_the_sidecar() -> None:
    assert isinstance(configure(Tags, {"tag": "a", "limit": "5"}), Tags)
    with pytest.raises(PluginError, match=r"setting 'limit'.*\(got 'lots'\)"):
        configure(Tags, {"tag": "a", "limit": "lots"})


async def test_run_passes_the_call_to_the_rest_and_captures_the_span() -> None:
    rest = Recorder(Result(status=202))
    with capture_spans() as captured:
        result = await run(
            configure(Tags, {"tag": "blue"}), make_call(subject="pay"), rest, tracer=captured.tracer
        )
    assert result.status == 202
    assert [c.metadata["x-tag"] for c in rest.calls] == ["blue:invoke/invoke/app-api"]
    assert captured.attributes()["test.tag"] == "blue"


async def test_recorder_answers_with_a_function_of_the_call() -> None:
    async def answer(call: Call) -> Result:
        return Result(status=200, body=call.subject.encode())

    result = await run([], make_call(subject="echo"), Recorder(answer))
    assert result.body == b"echo"


def test_a_plugin_in_a_real_sidecar_acts_on_invoke_and_delivery(
    plugin_sidecar: Callable[..., PluginSidecar],  # noqa: F811
) -> None:
    sidecar = plugin_sidecar(
        "middleware.test.tags", {"tag": "green"}, plugin=Tags, pipelines=["httpPipeline", "appHttpPipeline"]
    )
    answer = sidecar.invoke("hello", b"{}")
    assert answer.status_code == 200
    assert answer.json()["headers"]["x-tag"] == "green:invoke/invoke/app-api,green:invoke/invoke/app-channel"
    assert sidecar.publish({"n": 1}).status_code == 204
    delivered = [r for r in sidecar.wait_received(2) if r["path"] == "/events"]
    assert [d["headers"]["x-tag"] for d in delivered] == ["green:pubsub/deliver/app-channel"]


def test_a_misbehaving_plugin_fails_only_its_calls_in_a_real_sidecar() -> None:
    with PluginSidecar("middleware.test.misbehaves", plugin=Misbehaves) as sidecar:
        hung: list[httpx.Response] = []
        hanging = threading.Thread(target=lambda: hung.append(sidecar.invoke("hang")))
        hanging.start()
        for _ in range(20):
            assert sidecar.invoke("fine").status_code == 200
        raised, garbage = sidecar.invoke("raise"), sidecar.invoke("garbage")
        hanging.join(10)
        assert (raised.status_code, raised.json()["errorCode"]) == (500, "ERR_MIDDLEWARE")
        assert raised.json()["message"] == (
            "middleware 'plugin' (middleware.test.misbehaves) raised RuntimeError: plugin bug"
        )
        assert "returned NoneType, not a Result" in garbage.json()["message"]
        assert hung[0].status_code == 504
        assert "did not finish within 1s of its own time" in hung[0].json()["message"]
        assert sidecar.invoke("fine").status_code == 200
        assert "middleware plugin (middleware.test.misbehaves) raised on invoke/invoke" in sidecar.log()

"""outrig-audit, tested only through outrig's plugin test kit."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from outrig_audit import Audit

from outrig.middleware import CallError, PluginError, Result
from outrig.middleware.testing import (
    PluginSidecar,
    Recorder,
    capture_spans,
    configure,
    make_call,
    plugin_sidecar,  # noqa: F401 - the kit's fixture
    run,
)


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_one_line_per_call_with_who_what_and_how_it_ended(tmp_path: Path) -> None:
    audit = configure(Audit, {"path": str(tmp_path / "audit.jsonl")})
    call = make_call(
        target="orders", subject="checkout", caller="web", identity="spiffe://public/ns/default/web"
    )
    with capture_spans() as captured:
        result = await run(audit, call, Recorder(Result(status=201)), tracer=captured.tracer, app_id="orders")
    assert result.status == 201
    [line] = lines(tmp_path / "audit.jsonl")
    assert {k: line[k] for k in ("app", "block", "target", "subject", "caller", "status", "error")} == {
        "app": "orders",
        "block": "invoke",
        "target": "orders",
        "subject": "checkout",
        "caller": "web",
        "status": 201,
        "error": "",
    }
    assert line["identity"] == "spiffe://public/ns/default/web"
    [span] = captured.spans
    assert line["trace_id"] == f"{span.context.trace_id:032x}"
    assert captured.attributes()["outrig.audit.recorded"] is True


async def test_failures_are_recorded_with_their_error_code(tmp_path: Path) -> None:
    async def refuse(call: object) -> Result:
        raise CallError("ERR_STATE_GET", "store down", 500)

    audit = configure(Audit, {"path": str(tmp_path / "audit.jsonl")})
    result = await run(audit, make_call("state", "get", "statestore", "k"), refuse)
    assert result.status == 500
    [line] = lines(tmp_path / "audit.jsonl")
    assert (line["block"], line["status"], line["error"]) == ("state", 500, "ERR_STATE_GET")


async def test_only_the_chosen_blocks_and_headers_with_secrets_redacted(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = configure(Audit, {"path": str(path), "blocks": "invoke", "headers": "x-user, Authorization"})
    headers = {"x-user": "ana", "authorization": "Bearer secret", "x-other": "1"}
    await run(audit, make_call(headers=headers))
    await run(audit, make_call("state", "get", "statestore", "k"))
    [line] = lines(path)
    assert line["headers"] == {"authorization": "[redacted]", "x-user": "ana"}
    assert "secret" not in path.read_text()


def test_a_misspelt_setting_is_named() -> None:
    with pytest.raises(PluginError, match="no setting 'header'"):
        configure(Audit, {"header": "x-user"})


def test_in_a_real_sidecar_it_audits_invocations_and_deliveries(
    plugin_sidecar: Callable[..., PluginSidecar],  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    sidecar = plugin_sidecar(
        "middleware.outrig.audit",
        {"path": str(path)},
        plugin=Audit,
        pipelines=["httpPipeline", "appHttpPipeline"],
    )
    assert sidecar.invoke("checkout", b"{}").status_code == 200
    assert sidecar.publish({"order": 1}).status_code == 204
    expected = {
        ("invoke", "invoke", "app-api"),
        ("invoke", "invoke", "app-channel"),
        ("pubsub", "publish", "app-api"),
        ("pubsub", "deliver", "app-channel"),
    }
    # A line is written once the call has ended: after the app answered it.
    deadline = time.monotonic() + 10
    while not expected <= (seen := {(x["block"], x["operation"], x["hop"]) for x in lines(path)}):
        assert time.monotonic() < deadline, f"audited so far: {sorted(seen)}"
        time.sleep(0.05)

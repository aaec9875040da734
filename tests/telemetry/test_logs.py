"""Sidecar logs carry the trace they belong to (text by default, JSON with --log-as-json)."""

from __future__ import annotations

import json
import secrets
import time

import httpx

from tests.support import Processes


def test_json_logs_name_the_trace_of_the_message_they_are_about(procs: Processes) -> None:
    _, port = procs.subscriber_app([{"pubsubname": "pubsub", "topic": "t", "route": "/t"}], {"/t": "drop"})
    sidecar = procs.sidecar("logger", app_port=port, extra_args=["--log-as-json"])
    trace_id = secrets.token_hex(16)
    reply = httpx.post(
        sidecar.url("/v1.0/publish/pubsub/t"),
        json={"n": 1},
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
    )
    assert reply.status_code == 204
    deadline = time.monotonic() + 15
    dropped: list[dict[str, str]] = []
    while not dropped and time.monotonic() < deadline:
        entries = [json.loads(line) for line in sidecar.output().splitlines() if line.startswith("{")]
        dropped = [e for e in entries if "the app dropped event" in e["msg"]]
        time.sleep(0.05)
    assert dropped, sidecar.output()
    entry = dropped[0]
    assert entry["trace_id"] == trace_id and len(entry["span_id"]) == 16
    assert (entry["level"], entry["app_id"], entry["type"]) == ("warn", "logger", "log")
    assert entry["scope"] == "outrig.pubsub"
    started = [e for e in entries if e["msg"].startswith("subscribed to topic t")]
    assert started and started[0]["trace_id"] == "", "outside any trace, the ids are empty"

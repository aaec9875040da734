"""The example plugin (examples/outrig-audit), pip-installed as a third party's would be:
discovered by entry point, configured from YAML, acting in a real sidecar."""

from __future__ import annotations

import json
import time
from importlib.metadata import distribution, entry_points
from pathlib import Path

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, invoke_pb2
from google.protobuf.any_pb2 import Any

from outrig.middleware.testing import PluginSidecar


def test_the_installed_example_is_found_by_its_entry_point() -> None:
    [found] = [e for e in entry_points(group="outrig.middleware") if e.name == "middleware.outrig.audit"]
    assert found.value == "outrig_audit:Audit"
    assert distribution("outrig-audit").version == "0.1.0"


def invoke_over_grpc(sidecar: PluginSidecar, method: str, headers: dict[str, str]) -> bytes:
    """Dapr's gRPC InvokeService, as any Dapr SDK sends it, to the sidecar's own app."""
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        message = common_pb2.InvokeRequest(
            method=method,
            data=Any(value=b"{}"),
            content_type="application/json",
            http_extension=common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.POST),
        )
        request = invoke_pb2.InvokeServiceRequest(id=sidecar.app_id, message=message)
        answer = dapr_pb2_grpc.DaprStub(channel).InvokeService(
            request, metadata=list(headers.items()), timeout=10
        )
        return bytes(answer.data.value)


def test_the_installed_example_audits_http_and_grpc_calls_and_deliveries(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    settings = {"path": str(path), "headers": "x-user"}
    both = ["httpPipeline", "appHttpPipeline"]
    with PluginSidecar("middleware.outrig.audit", settings, pipelines=both) as sidecar:
        assert sidecar.invoke("checkout", b"{}", {"x-user": "ana"}).status_code == 200
        echoed = json.loads(invoke_over_grpc(sidecar, "refund", {"x-user": "bo"}))
        assert echoed["path"] == "/refund"
        assert sidecar.publish({"order": 1}).status_code == 204
        assert len(sidecar.wait_received(3)) == 3
        # A line is written once its call has ended, just after the app answered it.
        deadline = time.monotonic() + 10
        while len(path.read_text().splitlines()) < 6:
            assert time.monotonic() < deadline, path.read_text()
            time.sleep(0.05)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    seen = [(line["block"], line["subject"], line["hop"]) for line in lines]
    assert sorted(seen) == [
        ("invoke", "checkout", "app-api"),
        ("invoke", "checkout", "app-channel"),
        ("invoke", "refund", "app-api"),  # the gRPC call, through the same pipeline
        ("invoke", "refund", "app-channel"),
        ("pubsub", "events", "app-channel"),  # the delivery, to the subscription's route
        ("pubsub", "orders", "app-api"),
    ]
    assert all(line["app"] == "plugin-test" and line["trace_id"] for line in lines)
    users = {
        (line["subject"], line["hop"]): line.get("headers") for line in lines if line["block"] == "invoke"
    }
    assert users[("checkout", "app-api")] == users[("checkout", "app-channel")] == {"x-user": "ana"}
    assert users[("refund", "app-api")] == users[("refund", "app-channel")] == {"x-user": "bo"}

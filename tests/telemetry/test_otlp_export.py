"""Sidecars export their spans over OTLP (gRPC and HTTP) to a real Jaeger."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.jaeger import Jaeger, run_jaeger
from tests.support import Processes


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    yield from run_jaeger(tmp_path_factory.mktemp("jaeger"))


def otel_config(tmp_path: Path, endpoint: str, protocol: str) -> list[str]:
    config = tmp_path / f"otel-{protocol}.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: otel\nspec:\n"
        f'  tracing:\n    samplingRate: "1"\n    otel:\n      endpointAddress: "{endpoint}"\n'
        f"      isSecure: false\n      protocol: {protocol}\n"
    )
    return ["--config", str(config)]


def assert_invoke_trace(found: dict[str, Any], trace_id: str) -> None:
    spans = found["spans"]
    assert len(spans) == 4
    services = {pid: p["serviceName"] for pid, p in found["processes"].items()}
    by_id = {s["spanID"]: s for s in spans}

    def tags(span: dict[str, Any]) -> dict[str, Any]:
        return {t["key"]: t["value"] for t in span["tags"]}

    def parent(span: dict[str, Any]) -> str | None:
        refs = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
        return refs[0] if refs else None

    roles = {(services[s["processID"]], tags(s)["span.kind"]): s for s in spans}
    a_server, a_client = roles[("front", "server")], roles[("front", "client")]
    b_server, b_client = roles[("back", "server")], roles[("back", "client")]
    assert all(s["traceID"] == trace_id for s in spans)
    assert parent(a_client) == a_server["spanID"]
    assert parent(b_server) == a_client["spanID"]
    assert parent(b_client) == b_server["spanID"]
    assert parent(a_server) not in by_id
    assert a_server["operationName"] == "GET /v1.0/invoke/{appId}/method/{method}"
    assert b_client["operationName"] == "GET"
    assert tags(b_server)["http.route"] == "/v1.0/invoke/{appId}/method/{method}"
    assert tags(b_client)["http.response.status_code"] == 200


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_spans_reach_jaeger_over_otlp_from_the_configuration(
    procs: Processes, jaeger: Jaeger, tmp_path: Path, protocol: str
) -> None:
    port = jaeger.grpc_port if protocol == "grpc" else jaeger.http_port
    args = otel_config(tmp_path, f"127.0.0.1:{port}", protocol)
    a = procs.sidecar_with_echo("front", extra_args=args)
    procs.sidecar_with_echo("back", extra_args=args)
    trace_id = secrets.token_hex(16)
    reply = httpx.get(
        a.invoke_url("back", "hello"), headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    )
    assert reply.status_code == 200
    assert_invoke_trace(jaeger.trace(trace_id, 4), trace_id)
    assert not (procs.home / "traces.db").exists(), "with an exporter configured, no local store"


def test_spans_reach_jaeger_from_the_standard_otel_variables(procs: Processes, jaeger: Jaeger) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{jaeger.http_port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OUTRIG_TRACE_STORE": "1",
    }
    a = procs.sidecar_with_echo("front", env=env)
    procs.sidecar_with_echo("back", env=env)
    trace_id = secrets.token_hex(16)
    httpx.get(
        a.invoke_url("back", "hello"), headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    )
    assert_invoke_trace(jaeger.trace(trace_id, 4), trace_id)
    assert (procs.home / "traces.db").exists(), "OUTRIG_TRACE_STORE=1 keeps the local store too"

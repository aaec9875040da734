"""One pipeline for both APIs (middleware, traces), API tokens, errors, unimplemented RPCs."""

from __future__ import annotations

import contextlib
import json
import socket
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.proto.runtime.v1 import dapr_pb2_grpc, lock_pb2, pubsub_pb2, secret_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import set_span_in_context

from tests.redis_server import RedisServer
from tests.runtime.test_tracing import wait_for_spans
from tests.support import Processes, component_yaml, resource_folder

HEADERS_MIDDLEWARE = textwrap.dedent("""\
    apiVersion: dapr.io/v1alpha1
    kind: Component
    metadata:
      name: stamp
    spec:
      type: middleware.outrig.headers
      version: v1
      metadata:
      - name: requestHeader
        value: x-stamp
      - name: value
        value: pipeline
    ---
    apiVersion: dapr.io/v1alpha1
    kind: Configuration
    metadata:
      name: pipeline
    spec:
      httpPipeline:
        handlers:
        - name: stamp
          type: middleware.outrig.headers
    """)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_one_configured_middleware_acts_on_http_and_grpc_calls(
    procs: Processes, tmp_path: Path, point_sdk: Callable[..., str], protocol: str
) -> None:
    folder = resource_folder(tmp_path, {"pipeline.yaml": HEADERS_MIDDLEWARE})
    caller = procs.sidecar("mw-caller", extra_args=["--resources-path", str(folder), "--config",
                                                    str(folder / "pipeline.yaml")])  # fmt: skip
    procs.sidecar_with_echo("mw-callee")
    deprecated = pytest.warns(DeprecationWarning, match="invoke_method with protocol gRPC is deprecated")
    with (
        deprecated if protocol == "grpc" else contextlib.nullcontext(),
        DaprClient(point_sdk(caller, protocol)) as client,
    ):
        seen = json.loads(client.invoke_method("mw-callee", "orders", data="x").data)
    assert seen["headers"]["x-stamp"] == "pipeline", f"the httpPipeline middleware ran on the {protocol} call"


@pytest.mark.filterwarnings("ignore:invoke_method with protocol gRPC is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:metadata argument is deprecated:DeprecationWarning")
def test_an_sdk_clients_trace_continues_through_both_sidecars(
    procs: Processes, point_sdk: Callable[..., str]
) -> None:
    caller = procs.sidecar("trace-caller")
    procs.sidecar_with_echo("trace-callee")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("sdk-app").start_as_current_span("checkout") as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=set_span_in_context(span))
        with DaprClient(point_sdk(caller, "grpc")) as client:
            client.invoke_method("trace-callee", "stock", data="{}", metadata=tuple(carrier.items()))
    (client_span,) = exporter.get_finished_spans()
    trace_id = f"{client_span.context.trace_id:032x}"
    spans = wait_for_spans(procs.home, trace_id, 4)
    assert {s.trace_id for s in spans} == {trace_id}
    server = next(s for s in spans if s.service == "trace-caller" and s.kind == "SERVER")
    assert server.parent_id == f"{client_span.context.span_id:016x}", (
        "outrig's span is the client span's child"
    )
    assert server.name == "POST /v1.0/invoke/{appId}/method/{method}", "the same span name as over HTTP"
    assert (server.attributes["rpc.system"], server.attributes["rpc.method"]) == ("grpc", "InvokeService")
    assert {s.service for s in spans} == {"trace-caller", "trace-callee"}


def test_api_token_guards_both_apis_but_not_health(procs: Processes, point_sdk: Callable[..., str]) -> None:
    sidecar = procs.sidecar("guarded", env={"DAPR_API_TOKEN": "s3cret"}, wait=False)
    procs.wait_healthy(sidecar)  # health is exempt
    assert httpx.get(sidecar.url("/v1.0/healthz/outbound")).status_code == 204
    assert httpx.get(sidecar.url("/v1.0/healthz/")).status_code != 401, "exempt with a trailing slash too"
    refused = httpx.get(sidecar.url("/v1.0/metadata"))
    assert (refused.status_code, refused.json()["message"]) == (401, "invalid api token")
    assert (
        httpx.get(sidecar.url("/v1.0/state/statestore/k"), headers={"dapr-api-token": "wrong"}).status_code
        == 401
    )
    assert httpx.get(sidecar.url("/v1.0/metadata"), headers={"dapr-api-token": "s3cret"}).status_code == 200

    with DaprClient(point_sdk(sidecar)) as client, pytest.raises(DaprGrpcError) as missing:
        client.save_state("statestore", "k", "v")
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert missing.value.details() == "missing api token in request metadata"
    with DaprClient(point_sdk(sidecar, token="s3cret")) as client:
        client.save_state("statestore", "k", "v")
        assert client.get_state("statestore", "k").data == b"v"


def test_unimplemented_rpcs_answer_at_once_naming_the_rpc(procs: Processes) -> None:
    sidecar = procs.sidecar("partial")
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        unary = channel.unary_unary("/dapr.proto.runtime.v1.Dapr/RegisterActorTimer")
        with pytest.raises(grpc.RpcError) as refused:
            unary(b"", timeout=10)
        assert isinstance(refused.value, grpc.Call)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "dapr.proto.runtime.v1.Dapr/RegisterActorTimer is not implemented" in (
            refused.value.details() or ""
        )
        stream = channel.stream_stream("/dapr.proto.runtime.v1.Dapr/EncryptAlpha1")
        with pytest.raises(grpc.RpcError) as streaming:
            list(stream(iter([b""]), timeout=10))
        assert isinstance(streaming.value, grpc.Call)
        assert streaming.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_http_errors_carry_daprs_rich_details(procs: Processes) -> None:
    sidecar = procs.sidecar("details")
    reply = httpx.get(sidecar.url("/v1.0/state/nostore/k"))
    body = reply.json()
    assert (reply.status_code, body["errorCode"]) == (400, "ERR_STATE_STORE_NOT_FOUND")
    assert body["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "DAPR_STATE_NOT_FOUND",
            "domain": "dapr.io",
        }
    ], "no ResourceInfo for a store that does not exist, as in Dapr"
    nopubsub = httpx.post(sidecar.url("/v1.0/publish/nopubsub/orders"), json={}).json()
    info, resource = nopubsub["details"]
    assert (info["reason"], resource["@type"]) == (
        "DAPR_PUBSUB_NOT_FOUND", "type.googleapis.com/google.rpc.ResourceInfo"
    )  # fmt: skip
    named = (resource["resource_type"], resource["resource_name"])
    assert named == ("pubsub", "nopubsub"), "the pipeline names the pubsub, as on gRPC"
    illegal = httpx.post(sidecar.url("/v1.0/state/statestore"), json=[{"key": "a||b", "value": 1}]).json()
    assert illegal["details"][0]["reason"] == "DAPR_STATE_ILLEGAL_KEY"
    twice = [{"entryId": "1", "event": "a"}, {"entryId": "1", "event": "b"}]
    repeated = httpx.post(sidecar.url("/v1.0-alpha1/publish/bulk/pubsub/t"), json=twice).json()
    assert (repeated["errorCode"], repeated["details"][0]["reason"]) == (
        "ERR_PUBSUB_EVENTS_SER", "DAPR_PUBSUB_MARSHAL_EVENTS"
    ), "one entry-id check for both APIs, as Dapr's"  # fmt: skip
    plain = httpx.post(sidecar.url("/v1.0/state/statestore"), content=b"not json").json()
    assert set(plain) == {"errorCode", "message"}, "an error without a Dapr reason keeps the plain body"
    conflict = httpx.post(
        sidecar.url("/v1.0/state/statestore"), json=[{"key": "k", "value": 1, "etag": "not-the-etag"}]
    )
    assert conflict.status_code == 409 and set(conflict.json()) == {"errorCode", "message"}, (
        "no reason for an etag mismatch in Dapr: no details"
    )


def test_grpc_errors_carry_daprs_codes_and_reasons(procs: Processes) -> None:
    sidecar = procs.sidecar("grpc-codes")  # no secret store, no lock store
    bulk = [pubsub_pb2.BulkPublishRequestEntry(entry_id="1", event=b"a", content_type="text/plain")] * 2
    cases = [
        ("PublishEvent", pubsub_pb2.PublishEventRequest(pubsub_name="nopubsub", topic="orders", data=b"x"),
         "INVALID_ARGUMENT", "DAPR_PUBSUB_NOT_FOUND"),
        ("PublishEvent", pubsub_pb2.PublishEventRequest(pubsub_name="", topic="orders", data=b"x"),
         "INVALID_ARGUMENT", "DAPR_PUBSUB_NAME_EMPTY"),
        ("PublishEvent", pubsub_pb2.PublishEventRequest(pubsub_name="pubsub", topic="", data=b"x"),
         "INVALID_ARGUMENT", "DAPR_PUBSUB_TOPICNAME_EMPTY"),
        ("BulkPublishEvent", pubsub_pb2.BulkPublishRequest(pubsub_name="pubsub", topic="t", entries=bulk),
         "INVALID_ARGUMENT", "DAPR_PUBSUB_MARSHAL_EVENTS"),
        ("GetSecret", secret_pb2.GetSecretRequest(store_name="vault", key="k"), "FAILED_PRECONDITION", None),
        ("TryLockAlpha1", lock_pb2.TryLockRequest(store_name="locks", resource_id="r", lock_owner="me",
                                                  expiry_in_seconds=30), "FAILED_PRECONDITION", None),
    ]  # fmt: skip
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        for rpc, request, code, reason in cases:
            with pytest.raises(grpc.RpcError) as failed:
                getattr(stub, rpc)(request, timeout=10)
            call = failed.value
            assert isinstance(call, grpc.Call) and call.code().name == code, (rpc, call)
            rich = rpc_status.from_call(call)
            info = error_details_pb2.ErrorInfo()
            if reason is None:
                assert rich is None or not any(d.Is(info.DESCRIPTOR) for d in rich.details), rpc
            else:
                assert rich is not None and rich.details[0].Unpack(info) and info.reason == reason, rpc


def test_a_partly_failed_bulk_publish_is_daprs_error_naming_the_failed_entries(
    procs: Processes, tmp_path: Path, redis_server: RedisServer
) -> None:
    topic = f"taken-{uuid.uuid4().hex}"
    host, port = redis_server.address.rsplit(":", 1)
    with socket.create_connection(
        (host, int(port)), timeout=5
    ) as conn:  # the key is not a stream: XADD fails
        conn.sendall(f"*3\r\n$3\r\nSET\r\n${len(topic)}\r\n{topic}\r\n$1\r\nx\r\n".encode())
        assert conn.recv(16).startswith(b"+OK")
    folder = resource_folder(
        tmp_path, {"redis.yaml": component_yaml("broker", "pubsub.redis", redisHost=redis_server.address)}
    )
    sidecar = procs.sidecar("bulk-fails", extra_args=["--resources-path", str(folder)])
    entries = [
        pubsub_pb2.BulkPublishRequestEntry(entry_id=i, event=b"e", content_type="text/plain") for i in "12"
    ]
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            stub.BulkPublishEvent(
                pubsub_pb2.BulkPublishRequest(pubsub_name="broker", topic=topic, entries=entries), timeout=10
            )
    call = failed.value
    assert isinstance(call, grpc.Call) and call.code() == grpc.StatusCode.INTERNAL, "as Dapr's gRPC API"
    rich = rpc_status.from_call(call)
    info = error_details_pb2.ErrorInfo()
    assert rich is not None and rich.details[0].Unpack(info)
    assert info.reason == "DAPR_PUBSUB_PUBLISH_MESSAGE"
    assert sorted(info.metadata["failedEntries"].split(",")) == ["1", "2"], "which entries to retry"
    over_http = httpx.post(sidecar.url(f"/v1.0-alpha1/publish/bulk/broker/{topic}"),
                           json=[{"entryId": "a", "event": "e", "contentType": "text/plain"}])  # fmt: skip
    assert over_http.status_code == 500 and over_http.json()["failedEntries"][0]["entryId"] == "a"

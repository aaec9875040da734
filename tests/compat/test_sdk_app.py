"""A `dapr.ext.grpc.App` behind outrig (`--app-protocol grpc`), called by SDK clients over
HTTP and gRPC, and subscribed to a topic it lists through ListTopicSubscriptions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, invoke_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.support import Processes, Sidecar, component_yaml, resource_folder


def grpc_app_sidecar(
    procs: Processes,
    app_id: str,
    env: dict[str, str] | None = None,
    extra: list[str] | None = None,
    app_env: dict[str, str] | None = None,
) -> Sidecar:
    _, port = procs.sdk_grpc_app(app_env)
    return procs.sidecar(
        app_id, app_port=port, extra_args=["--app-protocol", "grpc", *(extra or [])], env=env
    )


def received(sidecar: Sidecar, enough: Callable[[list[dict[str, Any]]], bool], within: float = 15) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = httpx.post(sidecar.invoke_url(sidecar.app_id, "received"), timeout=10).json()
        if enough(got) or time.monotonic() >= deadline:
            return got
        time.sleep(0.1)


@pytest.mark.filterwarnings("ignore:invoke_method with protocol gRPC is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:metadata argument is deprecated:DeprecationWarning")
def test_invoke_a_grpc_app_over_http_and_grpc(procs: Processes, point_sdk: Callable[..., str]) -> None:
    callee = grpc_app_sidecar(procs, "sdk-callee")
    caller = procs.sidecar("sdk-caller")

    with DaprClient(point_sdk(caller, "http")) as client:  # the SDK's default: HTTP
        reply = client.invoke_method("sdk-callee", "echo", data='{"n": 1}', content_type="application/json",
                                     http_verb="PUT")  # fmt: skip
        answer = json.loads(reply.data)
        assert (answer["data"], answer["content_type"]) == ('{"n": 1}', "application/json")

    with DaprClient(point_sdk(caller, "grpc")) as client:
        reply = client.invoke_method("sdk-callee", "echo", data="hi", content_type="text/plain",
                                     metadata=(("x-tenant", "acme"),))  # fmt: skip
        answer = json.loads(reply.data)
        assert (answer["data"], answer["content_type"]) == ("hi", "text/plain")
        assert answer["metadata"]["x-tenant"] == "acme", "gRPC metadata reaches the app"
        assert answer["metadata"]["dapr-caller-app-id"] == "sdk-caller"
        assert "traceparent" in answer["metadata"], "the app gets the trace context"
        assert reply.content_type == "application/json"

        with pytest.raises(grpc.RpcError) as failed:
            client.invoke_method("sdk-callee", "fail", data="")
        assert isinstance(failed.value, grpc.Call)
        assert failed.value.code() == grpc.StatusCode.INTERNAL
        assert "the app failed on purpose" in (failed.value.details() or ""), "the app's error comes back"
        with pytest.raises(grpc.RpcError) as unknown_app:
            client.invoke_method("nobody", "echo", data="")
        assert isinstance(unknown_app.value, grpc.Call)
        assert unknown_app.value.code() == grpc.StatusCode.INTERNAL
        assert "couldn't find service: nobody" in (unknown_app.value.details() or "")

    # An HTTP app invoked over gRPC: the verb and query string from http_extension.
    echo = procs.sidecar_with_echo("sdk-http-callee")
    assert echo.app_port is not None
    with DaprClient(point_sdk(caller, "grpc")) as client:
        reply = client.invoke_method("sdk-http-callee", "orders/7", data="x", http_verb="PATCH",
                                     http_querystring=(("a", "b"),))  # fmt: skip
        seen = json.loads(reply.data)
        assert (seen["method"], seen["path"], seen["query"]) == ("PATCH", "/orders/7", "a=b")
    assert callee.app_port is not None


def test_a_grpc_app_subscribes_and_receives_published_events(
    procs: Processes, point_sdk: Callable[..., str]
) -> None:
    subscriber = grpc_app_sidecar(procs, "sdk-subscriber", env={"APP_API_TOKEN": "app-secret"})
    publisher = procs.sidecar("sdk-publisher")
    subscriptions = httpx.get(subscriber.url("/v1.0/metadata")).json()["subscriptions"]
    assert {(s["pubsubname"], s["topic"]) for s in subscriptions} == {
        ("pubsub", "orders"),
        ("pubsub", "unwanted"),
    }

    with DaprClient(point_sdk(publisher)) as client:
        client.publish_event("pubsub", "unwanted", data="ignored")
        client.publish_event(
            "pubsub", "orders", data=json.dumps({"id": 7}), data_content_type="application/json"
        )
        client.publish_event("pubsub", "orders", data="plain", data_content_type="text/plain")
        client.publish_event("pubsub", "orders", data='"quoted"', data_content_type="application/json")
    got = received(subscriber, lambda r: len(r) >= 3)
    # Deliveries run concurrently (the component's `concurrency`): no order between them.
    assert sorted((e["data"], e["content_type"], e["topic"]) for e in got) == [
        ('"quoted"', "application/json", "orders"),
        ("plain", "text/plain", "orders"),
        ('{"id":7}', "application/json", "orders"),
    ], "a JSON string stays JSON (quoted), as Dapr sends it"
    assert {(e["extension_topic"], e["pubsubname"]) for e in got} == {("orders", "pubsub")}, (
        "topic and pubsubname stay in extensions, as in Dapr"
    )
    assert all(e["traceparent"].startswith("00-") for e in got), "the publisher's trace rides along"
    assert all(e["token"] == "app-secret" for e in got), "APP_API_TOKEN reaches the app as dapr-api-token"


def test_metadata_and_set_metadata(procs: Processes, point_sdk: Callable[..., str]) -> None:
    sidecar = grpc_app_sidecar(procs, "sdk-meta")
    with DaprClient(point_sdk(sidecar)) as client:
        client.set_metadata("team", "payments")
        meta = client.get_metadata()
    assert meta.application_id == "sdk-meta"
    assert {c.name for c in meta.registered_components} >= {"statestore", "pubsub"}
    assert meta.extended_metadata["team"] == "payments"
    http_view = httpx.get(sidecar.url("/v1.0/metadata")).json()
    assert http_view["extended"]["team"] == "payments", "one metadata, whichever API set it"
    assert http_view["appConnectionProperties"]["protocol"] == "grpc"
    assert {s["topic"] for s in http_view["subscriptions"]} == {"orders", "unwanted"}


def test_a_grpc_app_receives_input_binding_events(procs: Processes, tmp_path: Path) -> None:
    folder = resource_folder(
        tmp_path,
        {
            "tick.yaml": component_yaml("tick", "bindings.cron", schedule="@every 1s"),
            "other.yaml": component_yaml("other", "bindings.cron", schedule="@every 1s"),
        },
    )
    sidecar = grpc_app_sidecar(procs, "sdk-bindings", extra=["--resources-path", str(folder)])
    got = received(sidecar, lambda r: len(r) >= 2)
    assert len(got) >= 2, got
    assert {e["binding"] for e in got} == {"tick"}, "only the binding the app lists, by the name sent"


def test_message_limits_follow_max_request_size(procs: Processes, point_sdk: Callable[..., str]) -> None:
    big = "x" * (5 * 1024 * 1024)
    roomy = grpc_app_sidecar(
        procs, "sdk-big", extra=["--dapr-http-max-request-size", "8"],
        app_env={"DAPR_GRPC_MAX_INBOUND_MESSAGE_SIZE_BYTES": str(16 * 1024 * 1024)},
    )  # fmt: skip
    with DaprClient(point_sdk(roomy)) as client:
        client.publish_event("pubsub", "orders", data=big, data_content_type="text/plain")
    got = received(roomy, lambda r: len(r) >= 1)
    assert [len(e["data"]) for e in got] == [len(big)], "5 MB in through the API, out to the app"
    reply = httpx.post(roomy.invoke_url("sdk-big", "echo"), content=big, timeout=30)
    assert reply.status_code == 200 and len(reply.json()["data"]) == len(big), "and back from the app"

    default = procs.sidecar("sdk-small")
    with DaprClient(point_sdk(default)) as client, pytest.raises(DaprGrpcError) as refused:
        client.publish_event("pubsub", "orders", data=big, data_content_type="text/plain")
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, "4 MB by default"


def test_invoke_service_maps_an_http_callees_answer_as_dapr(procs: Processes) -> None:
    procs.sidecar_with_echo("sdk-status-callee")
    caller = procs.sidecar("sdk-status-caller")
    with grpc.insecure_channel(f"127.0.0.1:{caller.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)

        def invoke(method: str, verb: int = common_pb2.HTTPExtension.GET) -> Any:
            message = common_pb2.InvokeRequest(
                method=method, http_extension=common_pb2.HTTPExtension(verb=verb)
            )
            request = invoke_pb2.InvokeServiceRequest(id="sdk-status-callee", message=message)
            return stub.InvokeService.with_call(request, timeout=10)

        _, ok = invoke("status/200")
        headers = dict(ok.initial_metadata())
        assert (headers["x-echo-status"], headers["dapr-http-status"]) == ("200", "200"), "headers come back"
        for status, code in ((400, grpc.StatusCode.INTERNAL), (404, grpc.StatusCode.NOT_FOUND),
                             (500, grpc.StatusCode.UNKNOWN), (503, grpc.StatusCode.UNAVAILABLE)):  # fmt: skip
            with pytest.raises(grpc.RpcError) as failed:
                invoke(f"status/{status}")
            call = failed.value
            assert isinstance(call, grpc.Call) and call.code() == code, status
            assert call.details() == HTTPStatus(status).phrase
            assert dict(call.initial_metadata())["dapr-http-status"] == str(status)
            rich = rpc_status.from_call(call)
            assert rich is not None
            info = error_details_pb2.ErrorInfo()
            assert rich.details[0].Unpack(info)
            assert (info.reason, info.domain) == (HTTPStatus(status).phrase, "dapr.io")
            assert dict(info.metadata) == {
                "http.code": str(status),
                "http.error_message": f"status {status} from app",
            }
        with pytest.raises(grpc.RpcError) as bad_verb:
            invoke("status/200", verb=99)
        assert isinstance(bad_verb.value, grpc.Call)
        assert bad_verb.value.code() == grpc.StatusCode.INVALID_ARGUMENT

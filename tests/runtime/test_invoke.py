"""Service invocation through two real sidecars: app A -> sidecar A -> sidecar B -> app B."""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.runtime.conftest import Mesh
from tests.support import Processes, free_port, peak_rss_kib

VERBS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
MB = 1 << 20


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_reaches_app_b_with_headers_query_and_body(mesh: Mesh, verb: str) -> None:
    body = b"" if verb in ("GET", "HEAD", "OPTIONS") else f"payload for {verb}".encode()
    reply = mesh.client.request(
        verb,
        mesh.a.invoke_url("app-b", "orders/42") + "?expand=items&x=%2F",
        content=body,
        headers={"x-custom": "kept", "content-type": "text/plain"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-echo"] == "yes"
    if verb == "HEAD":
        assert reply.content == b""
        assert int(reply.headers["content-length"]) > 0  # the app's declared length, kept
        return
    seen = reply.json()
    assert seen["method"] == verb
    assert seen["path"] == "/orders/42"
    assert seen["query"] == "expand=items&x=%2F"
    assert seen["headers"]["x-custom"] == "kept"
    assert seen["headers"]["dapr-caller-app-id"] == "app-a"
    assert seen["headers"]["dapr-callee-app-id"] == "app-b"
    assert seen["body_length"] == len(body)
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_head_keeps_the_length_the_app_declares(mesh: Mesh) -> None:
    reply = mesh.client.head(mesh.a.invoke_url("app-b", "big?size=5000"))
    assert reply.status_code == 200
    assert reply.headers["content-length"] == "5000"


@pytest.mark.parametrize("status", [200, 404, 500, 503])
def test_upstream_status_and_body_come_back_intact(mesh: Mesh, status: int) -> None:
    reply = mesh.client.get(mesh.a.invoke_url("app-b", f"status/{status}"))
    assert reply.status_code == status
    assert reply.text == f"status {status} from app"
    assert reply.headers["x-echo-status"] == str(status)


def test_dapr_app_id_header_form(mesh: Mesh) -> None:
    reply = mesh.client.post(
        mesh.a.url("/inventory/check?sku=7"), content=b"hi", headers={"dapr-app-id": "app-b"}
    )
    assert reply.status_code == 200
    seen = reply.json()
    assert (seen["path"], seen["query"], seen["body_prefix"]) == ("/inventory/check", "sku=7", "hi")


def test_an_app_cannot_pose_as_another_caller(mesh: Mesh) -> None:
    reply = mesh.client.get(mesh.a.invoke_url("app-b", "who"), headers={"dapr-caller-app-id": "admin"})
    assert reply.json()["headers"]["dapr-caller-app-id"] == "app-a"


def test_invoking_own_app_id_goes_straight_to_the_app(mesh: Mesh) -> None:
    reply = mesh.client.get(mesh.a.invoke_url("app-a", "self"))
    assert reply.status_code == 200
    assert reply.json()["headers"]["dapr-callee-app-id"] == "app-a"


def _sidecar_pids(mesh: Mesh) -> list[int]:
    return [mesh.a.proc.pid, mesh.b.proc.pid]


def test_10mb_request_body_streams_without_growing_sidecar_memory(mesh: Mesh) -> None:
    warmup = os.urandom(2 * MB)
    assert mesh.client.post(mesh.a.invoke_url("app-b", "upload"), content=warmup).status_code == 200
    before = [peak_rss_kib(pid) for pid in _sidecar_pids(mesh)]
    body = os.urandom(10 * MB)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 256 * 1024):
            yield body[start : start + 256 * 1024]

    reply = mesh.client.post(mesh.a.invoke_url("app-b", "upload"), content=chunks())
    assert reply.status_code == 200
    seen = reply.json()
    assert seen["body_length"] == len(body)
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    after = [peak_rss_kib(pid) for pid in _sidecar_pids(mesh)]
    growth_mb = [(a - b) / 1024 for a, b in zip(after, before, strict=True)]
    assert all(g < 4 for g in growth_mb), f"sidecar peak RSS grew by {growth_mb} MB for a 10 MB body"


def test_10mb_response_body_streams_back_without_growing_sidecar_memory(mesh: Mesh) -> None:
    size = 10 * MB
    assert mesh.client.get(mesh.a.invoke_url("app-b", f"big?size={2 * MB}")).status_code == 200
    before = [peak_rss_kib(pid) for pid in _sidecar_pids(mesh)]
    received = 0
    with mesh.client.stream("GET", mesh.a.invoke_url("app-b", f"big?size={size}")) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-length"] == str(size)
        for chunk in reply.iter_bytes():
            received += len(chunk)
    assert received == size
    after = [peak_rss_kib(pid) for pid in _sidecar_pids(mesh)]
    growth_mb = [(a - b) / 1024 for a, b in zip(after, before, strict=True)]
    assert all(g < 4 for g in growth_mb), f"sidecar peak RSS grew by {growth_mb} MB for a 10 MB body"


def test_unknown_app_id_gives_dapr_error_shape(mesh: Mesh) -> None:
    reply = mesh.client.post(mesh.a.invoke_url("nobody", "x"), content=b"{}")
    assert reply.status_code == 500
    error = reply.json()
    assert error["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "couldn't find service: nobody" in error["message"]


def test_malformed_invoke_path_is_a_bad_request(mesh: Mesh) -> None:
    reply = mesh.client.get(mesh.a.url("/v1.0/invoke/app-b/orders"))
    assert reply.status_code == 400
    assert reply.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert "/v1.0/invoke/{appId}/method/{method}" in reply.json()["message"]


def test_unknown_api_route_gives_dapr_error_shape(mesh: Mesh) -> None:
    reply = mesh.client.get(mesh.a.url("/v1.0/nothing-here"))
    assert reply.status_code == 404
    assert reply.json()["errorCode"] == "ERR_NOT_FOUND"


def test_health_and_metadata(mesh: Mesh) -> None:
    assert mesh.client.get(mesh.a.url("/v1.0/healthz")).status_code == 204
    assert mesh.client.get(mesh.a.url("/v1.0/healthz/outbound")).status_code == 204
    meta = mesh.client.get(mesh.a.url("/v1.0/metadata")).json()
    assert meta["id"] == "app-a"
    assert meta["appConnectionProperties"]["port"] == mesh.a.app_port
    assert meta["runtimeVersion"].startswith("outrig-")


def test_dead_app_gives_dapr_error_and_the_sidecar_keeps_serving(procs: Processes) -> None:
    a = procs.sidecar_with_echo("caller")
    app, port = procs.echo_app()
    b = procs.sidecar("dying", app_port=port)
    assert httpx.get(a.invoke_url("dying", "ping")).status_code == 200
    app.send_signal(signal.SIGKILL)
    app.wait()
    reply = httpx.get(a.invoke_url("dying", "ping"), timeout=10)
    assert reply.status_code == 500
    error = reply.json()
    assert error["errorCode"] == "ERR_DIRECT_INVOKE"
    assert f"app dying at 127.0.0.1:{port}" in error["message"]
    assert httpx.get(a.invoke_url("caller", "still-here")).status_code == 200
    assert b.proc.poll() is None


def test_dead_sidecar_is_no_longer_resolved(procs: Processes) -> None:
    a = procs.sidecar_with_echo("caller")
    b = procs.sidecar_with_echo("gone")
    assert httpx.get(a.invoke_url("gone", "ping")).status_code == 200
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    reply = httpx.get(a.invoke_url("gone", "ping"), timeout=10)
    assert reply.status_code == 500
    assert reply.json()["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "couldn't find service: gone" in reply.json()["message"]
    assert not list((procs.home / "registry" / "gone").glob("*.json")), "the dead entry is removed"


def test_shutdown_api_stops_the_sidecar(procs: Processes) -> None:
    a = procs.sidecar_with_echo("short-lived")
    assert httpx.post(a.url("/v1.0/shutdown")).status_code == 204
    assert a.proc.wait(15) == 0


def test_nameformat_resolution_finds_peers_by_name(procs: Processes, tmp_path: Path) -> None:
    """Dapr's `nameformat` resolver, as Docker Compose or Kubernetes DNS would be used: here
    the app id `localhost` is a name that resolves, at a fixed internal port."""
    internal = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: dns\nspec:\n"
        "  nameResolution:\n    component: nameformat\n    configuration:\n"
        f"      format: '{{appid}}:{internal}'\n"
    )
    procs.sidecar_with_echo("localhost", extra_args=["--internal-port", str(internal)])
    caller = procs.sidecar_with_echo("caller", extra_args=["--config", str(config)])
    reply = httpx.get(caller.invoke_url("localhost", "hello"))
    assert reply.status_code == 200 and reply.json()["path"] == "/hello"
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("'{appid}", "'nohost"))
    proc = procs.sidecar("bad", extra_args=["--config", str(bad)], wait=False)
    assert proc.proc.wait(30) != 0
    assert "format must contain {appid}" in proc.output()

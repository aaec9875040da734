"""HTTP proxying edge cases on the invoke path, at the byte level where clients hide them."""

from __future__ import annotations

import json
import socket
import time

import httpx

from tests.runtime.conftest import Mesh


def raw_exchange(port: int, request: bytes, body_after_continue: bytes | None = None) -> bytes:
    """Send raw bytes, (optionally wait for 100 Continue and send a body), read to close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        if body_after_continue is not None:
            interim = sock.recv(1024)
            assert interim.startswith(b"HTTP/1.1 100"), interim
            sock.sendall(body_after_continue)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def split(response: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}
    return status, headers, body


def test_non_ascii_header_bytes_pass_unchanged_both_ways(mesh: Mesh) -> None:
    name = "café ☕".encode()
    reply = mesh.client.get(mesh.a.invoke_url("app-b", "hello"), headers={"x-name": name})
    assert reply.json()["headers"]["x-name"] == "café ☕"
    back = mesh.client.get(mesh.a.invoke_url("app-b", "unicode"))
    assert back.status_code == 200
    assert dict(back.headers.raw)[b"x-euro"] == "€ and café".encode()


def test_headers_named_by_connection_and_expect_stay_on_their_hop(mesh: Mesh) -> None:
    request = (
        b"POST /v1.0/invoke/app-b/method/hop HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close, X-Hop\r\nX-Hop: secret\r\nX-Kept: yes\r\n"
        b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    status, _, body = split(raw_exchange(mesh.a.http_port, request, body_after_continue=b"hello"))
    assert status.startswith(b"HTTP/1.1 200")
    seen = json.loads(body)["headers"]
    assert seen["x-kept"] == "yes"
    assert "x-hop" not in seen and "expect" not in seen
    assert json.loads(body)["body_prefix"] == "hello"


def test_bodiless_answers_keep_their_declared_length_and_the_connection_healthy(mesh: Mesh) -> None:
    with httpx.Client(timeout=10) as client:  # one keep-alive connection for all of these
        not_modified = client.get(mesh.a.invoke_url("app-b", "declared/304?length=2000000"))
        assert (not_modified.status_code, not_modified.content) == (304, b"")
        no_content = client.get(mesh.a.invoke_url("app-b", "declared/204?length=0"))
        assert (no_content.status_code, no_content.content) == (204, b"")
        head = client.head(mesh.a.invoke_url("app-b", "declared/200?length=77"))
        assert (head.status_code, head.headers["content-length"]) == (200, "77")
        after = client.get(mesh.a.invoke_url("app-b", "status/200"))
        assert after.text == "status 200 from app"
    for sidecar in (mesh.a, mesh.b):
        assert "shorter than Content-Length" not in sidecar.output()


def test_percent_encoded_method_paths_reach_the_app_as_sent(mesh: Mesh) -> None:
    reply = mesh.client.get(mesh.a.invoke_url("app-b", "a%2Fb/c%20d") + "?q=%41")
    assert (reply.json()["path"], reply.json()["query"]) == ("/a%2Fb/c%20d", "q=%41")


def test_an_encoded_slash_in_the_api_prefix_is_not_an_invocation(mesh: Mesh) -> None:
    reply = mesh.client.get(mesh.a.url("/v1.0%2Finvoke/app-b/method/x"))
    assert reply.status_code == 404
    assert reply.json()["errorCode"] == "ERR_NOT_FOUND"


def test_wrong_verb_on_a_control_route_gets_dapr_error_shape(mesh: Mesh) -> None:
    reply = mesh.client.post(mesh.a.url("/v1.0/healthz"))
    assert reply.status_code == 405
    assert reply.json()["errorCode"] == "ERR_METHOD_NOT_ALLOWED"
    assert reply.headers["allow"] == "GET, HEAD"


def test_a_client_leaving_a_stream_stops_the_upstream_stream(mesh: Mesh) -> None:
    app_b = f"http://127.0.0.1:{mesh.b.app_port}/active"
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", mesh.a.invoke_url("app-b", "endless")) as reply,
    ):
        received = 0
        for chunk in reply.iter_bytes():
            received += len(chunk)
            if received > 200_000:
                # Checked inside the loop: leaving it drops the generator, and httpx then
                # closes the connection, so a later check would race the disconnect.
                assert httpx.get(app_b).text == "1"
                break
    deadline = time.monotonic() + 10
    while httpx.get(app_b).text != "0":
        assert time.monotonic() < deadline, "the app is still streaming to a client that left"
        time.sleep(0.1)

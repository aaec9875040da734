"""Bindings through real sidecars: output bindings (localstorage, http, redis) and the cron
input binding delivering to an app, with errors, resiliency and traces."""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from outrig.telemetry import StoredSpan, TraceStore, trace_store_path
from tests.redis_server import RedisServer
from tests.support import Processes, Sidecar, component_yaml, free_port, resource_folder

BINDINGS_APP = Path(__file__).parent.parent / "apps" / "bindings_app.py"


def invoke(sidecar: Sidecar, name: str, operation: str, data: Any = None, **metadata: str) -> httpx.Response:
    body = {"operation": operation, "data": data, "metadata": metadata}
    return httpx.post(sidecar.url(f"/v1.0/bindings/{name}"), json=body, timeout=30)


def test_localstorage_operations_and_errors(procs: Processes, tmp_path: Path) -> None:
    root = tmp_path / "files"
    folder = resource_folder(
        tmp_path, {"files.yaml": component_yaml("files", "bindings.localstorage", rootPath=str(root))}
    )
    sidecar = procs.sidecar("storage", extra_args=["--resources-path", str(folder)])

    made = invoke(sidecar, "files", "create", "hello", fileName="notes/a.txt")
    assert made.status_code == 200 and made.json() == {"fileName": "notes/a.txt"}
    assert (root / "notes" / "a.txt").read_bytes() == b"hello"
    assert invoke(sidecar, "files", "create", {"n": 1}, fileName="b.json").status_code == 200
    assert (root / "b.json").read_bytes() == b'{"n":1}'
    got = invoke(sidecar, "files", "get", fileName="notes/a.txt")
    assert got.status_code == 200 and got.content == b"hello"
    assert invoke(sidecar, "files", "list").json() == ["b.json", "notes/a.txt"]
    deleted = invoke(sidecar, "files", "delete", fileName="notes/a.txt")
    assert deleted.status_code == 204 and not (root / "notes" / "a.txt").exists()
    gone = invoke(sidecar, "files", "get", fileName="notes/a.txt")
    assert gone.status_code == 404 and gone.json()["errorCode"] == "ERR_INVOKE_OUTPUT_BINDING"

    escape = invoke(sidecar, "files", "create", "x", fileName="../../escaped.txt")
    assert escape.status_code == 400
    assert escape.json() == {
        "errorCode": "ERR_INVOKE_OUTPUT_BINDING",
        "message": "error invoking output binding files: fileName '../../escaped.txt' leaves the binding's "
        "rootPath; name a file under it",
    }
    assert not (tmp_path / "escaped.txt").exists()
    assert invoke(sidecar, "files", "get", fileName="/etc/hostname").status_code == 400
    (root / "loop").symlink_to(root / "loop")
    looped = invoke(sidecar, "files", "get", fileName="loop/x")
    assert looped.status_code == 400 and "fileName 'loop/x'" in looped.json()["message"]
    assert str(tmp_path) not in looped.text

    unknown = invoke(sidecar, "nope", "create")
    assert unknown.status_code == 500 and unknown.json()["errorCode"] == "ERR_INVOKE_OUTPUT_BINDING"
    assert "couldn't find output binding nope" in unknown.json()["message"]
    unsupported = invoke(sidecar, "files", "explode")
    assert unsupported.status_code == 500
    assert "does not support operation explode" in unsupported.json()["message"]
    assert "create, get, list, delete" in unsupported.json()["message"]
    malformed = httpx.post(sidecar.url("/v1.0/bindings/files"), content=b"{not json")
    assert malformed.status_code == 400 and malformed.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    no_operation = httpx.post(sidecar.url("/v1.0/bindings/files"), json={"data": 1})
    assert no_operation.status_code == 400 and "operation" in no_operation.json()["message"]
    assert httpx.get(sidecar.url("/v1.0/bindings/files")).status_code == 405
    not_text = invoke(sidecar, "files", "list", fileName=True)  # type: ignore[arg-type]
    assert not_text.status_code == 400 and not_text.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert "metadata.fileName must be a string" in not_text.json()["message"]


def test_http_binding_passes_path_headers_status_and_trace(procs: Processes, tmp_path: Path) -> None:
    _, echo_port = procs.echo_app()
    folder = resource_folder(
        tmp_path,
        {
            "web.yaml": component_yaml("web", "bindings.http", url=f"http://127.0.0.1:{echo_port}/base"),
            "root.yaml": component_yaml("root", "bindings.http", url=f"http://127.0.0.1:{echo_port}"),
        },
    )
    sidecar = procs.sidecar("caller", extra_args=["--resources-path", str(folder)])
    trace_id = secrets.token_hex(16)
    reply = httpx.post(
        sidecar.url("/v1.0/bindings/web"),
        json={
            "operation": "post",
            "data": {"a": 1},
            "metadata": {"path": "orders/7", "X-Tenant": "acme", "lower": "no"},
        },
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
    )
    assert reply.status_code == 200
    seen = reply.json()
    assert seen["method"] == "POST" and seen["path"] == "/base/orders/7"
    assert seen["headers"]["x-tenant"] == "acme" and "lower" not in seen["headers"]  # Dapr: capitals only
    assert seen["headers"]["traceparent"].split("-")[1] == trace_id
    assert reply.headers["metadata.statusCode"] == "200"
    assert reply.headers["metadata.status"] == "200 OK"
    failed = invoke(sidecar, "root", "get", path="status/503")
    assert failed.status_code == 500 and "received status code 503" in failed.json()["message"]
    escape = invoke(sidecar, "web", "get", path="../status/200")
    assert escape.status_code == 400 and "'..' segment" in escape.json()["message"]
    injected = invoke(sidecar, "web", "get", **{"X-Bad": "a\r\nX-Injected: 1"})
    assert injected.status_code == 400 and injected.json()["errorCode"] == "ERR_INVOKE_OUTPUT_BINDING"
    assert "metadata.X-Bad" in injected.json()["message"] and "Injected" not in injected.json()["message"]

    expected = {"post web", "POST /v1.0/bindings/{name}"}
    spans = wait_for(procs.home, lambda s: {x.name for x in s if x.trace_id == trace_id} >= expected)
    mine = {s.name: s for s in spans if s.trace_id == trace_id}
    client, server = mine["post web"], mine["POST /v1.0/bindings/{name}"]
    assert client.kind == "CLIENT" and client.parent_id == server.span_id
    assert client.attributes["outrig.operation"] == "bindings.post"
    assert client.attributes["server.port"] == echo_port
    assert seen["headers"]["traceparent"].split("-")[2] == client.span_id


def test_redis_binding_create_get_delete(procs: Processes, tmp_path: Path, redis_server: RedisServer) -> None:
    folder = resource_folder(
        tmp_path, {"cache.yaml": component_yaml("cache", "bindings.redis", redisHost=redis_server.address)}
    )
    sidecar = procs.sidecar("redis-binding", extra_args=["--resources-path", str(folder)])
    key = f"rb-{secrets.token_hex(4)}"
    direct = redis.Redis(port=redis_server.port)
    try:
        assert invoke(sidecar, "cache", "create", {"v": 1}, key=key).status_code == 204
        assert direct.get(key) == b'{"v":1}'
        got = invoke(sidecar, "cache", "get", key=key)
        assert got.status_code == 200 and got.json() == {"v": 1}
        assert invoke(sidecar, "cache", "create", "text", key=key, ttlInSeconds="60").status_code == 204
        assert direct.get(key) == b"text" and 0 < direct.ttl(key) <= 60
        assert invoke(sidecar, "cache", "delete", key=key).status_code == 204
        assert direct.get(key) is None
        assert invoke(sidecar, "cache", "get", key=key).status_code == 204
        no_key = invoke(sidecar, "cache", "get")
        assert no_key.status_code == 400 and "metadata.key is required" in no_key.json()["message"]
    finally:
        direct.delete(key)
        direct.close()


RETRY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: inbound
spec:
  policies:
    retries:
      quick:
        policy: constant
        duration: 50ms
        maxRetries: 3
  targets:
    components:
      flaky:
        inbound:
          retry: quick
"""


def bindings_app(
    procs: Processes, wanted: list[str], behaviour: dict[str, str], options: dict[str, int] | None = None
) -> int:
    port = free_port()
    env = procs.env(
        {
            "BINDINGS_WANTED": json.dumps(wanted),
            "BINDINGS_BEHAVIOUR": json.dumps(behaviour),
            "BINDINGS_OPTIONS": json.dumps(options or {}),
        }
    )
    proc = procs.spawn([sys.executable, str(BINDINGS_APP), str(port)], f"bindings-app-{port}.log", env)
    procs.wait_for_port(port, proc)
    return port


def received(port: int, enough: int, route: str, within: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        got = [r for r in httpx.get(f"http://127.0.0.1:{port}/received").json() if r["route"] == route]
        if len(got) >= enough or time.monotonic() >= deadline:
            return got
        time.sleep(0.1)


def test_cron_events_reach_the_app_that_wants_them_with_retries(procs: Processes, tmp_path: Path) -> None:
    app_port = bindings_app(
        procs, ["tick", "flaky", "custom"], {"flaky": "status:500*2"}, {"redirected": 307, "lenient": 405}
    )
    folder = resource_folder(
        tmp_path,
        {
            "tick.yaml": component_yaml("tick", "bindings.cron", schedule="@every 1s"),
            "unwanted.yaml": component_yaml("unwanted", "bindings.cron", schedule="* * * * * *"),
            "redirected.yaml": component_yaml("redirected", "bindings.cron", schedule="* * * * * *"),
            "lenient.yaml": component_yaml("lenient", "bindings.cron", schedule="* * * * * *"),
            "flaky.yaml": component_yaml("flaky", "bindings.cron", schedule="*/2 * * * * *"),
            "routed.yaml": component_yaml("routed", "bindings.cron", schedule="@every 1s", route="/custom"),
            "resiliency.yaml": RETRY,
        },
    )
    sidecar = procs.sidecar("cron-app", app_port=app_port, extra_args=["--resources-path", str(folder)])

    ticks = received(app_port, 2, "tick")
    assert len(ticks) >= 2
    assert ticks[0]["body"] == "" and ticks[0]["headers"]["readTimeUTC"].endswith("Z")
    assert "timeZone" in ticks[0]["headers"] and "traceparent" in ticks[0]["headers"]
    assert len(received(app_port, 1, "custom")) >= 1
    # The first event of `flaky` fails twice and succeeds on the third attempt (its policy).
    flaky = received(app_port, 3, "flaky")
    assert [r["status"] for r in flaky[:3]] == [500, 500, 200]
    assert len({r["headers"]["readTimeUTC"] for r in flaky[:3]}) == 1
    # `unwanted`'s OPTIONS answer was 404: it never delivers.
    assert received(app_port, 1, "unwanted", within=0) == []
    assert "input binding unwanted: the app answered OPTIONS /unwanted with 404" in sidecar.output()
    # As Dapr: only 2xx or 405 subscribes; a redirect does not.
    assert received(app_port, 1, "redirected", within=0) == []
    assert "the app answered OPTIONS /redirected with 307" in sidecar.output()
    assert len(received(app_port, 1, "lenient")) >= 1

    spans = wait_for(procs.home, lambda s: any(x.name == "process tick" for x in s))
    process = next(s for s in spans if s.name == "process tick")
    assert process.kind == "CONSUMER" and process.service == "cron-app"
    assert process.attributes["outrig.operation"] == "bindings.trigger"
    client = next(s for s in spans if s.parent_id == process.span_id)
    assert client.kind == "CLIENT" and client.name == "POST /tick"


def test_an_invalid_cron_expression_fails_the_load_with_file_field_and_value(
    procs: Processes, tmp_path: Path
) -> None:
    folder = resource_folder(
        tmp_path, {"cron.yaml": component_yaml("tick", "bindings.cron", schedule="*/5 * * * * * *")}
    )
    sidecar = procs.sidecar("bad-cron", extra_args=["--resources-path", str(folder)], wait=False)
    assert sidecar.proc.wait(30) != 0
    output = sidecar.output()
    assert "cron.yaml:10" in output and "spec.metadata[0].value" in output
    assert "invalid cron schedule: expected 5 or 6 fields" in output
    assert "(value: '*/5 * * * * * *')" in output


def wait_for(home: Path, done: Any, within: float = 30) -> list[StoredSpan]:
    deadline = time.monotonic() + within
    spans: list[StoredSpan] = []
    while time.monotonic() < deadline:
        if trace_store_path(home).exists():
            store = TraceStore(trace_store_path(home))
            try:
                spans = [s for tid in store.recent_trace_ids(1000) for s in store.spans(tid)]
            finally:
                store.close()
            if done(spans):
                return spans
        time.sleep(0.1)
    raise AssertionError(f"spans not there in time: {sorted({s.name for s in spans})}")

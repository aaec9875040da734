"""`state.redis` behind a real sidecar and a real redis-server: faults, recovery, traces."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.redis_server import RedisServer
from tests.runtime.test_state_api import increment_concurrently
from tests.runtime.test_tracing import wait_for_spans
from tests.support import Processes, Sidecar, component_yaml, resource_folder


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path / "redis").start()
    yield running
    running.stop()


def redis_sidecar(procs: Processes, server: RedisServer, app_id: str, tmp_path: Path) -> Sidecar:
    redis = component_yaml("redisstore", "state.redis", redisHost=server.address, redisPassword="")
    resources = resource_folder(tmp_path, {"redis.yaml": redis}, folder=f"res-{app_id}")
    return procs.sidecar(app_id, extra_args=["--resources-path", str(resources)])


def url(sidecar: Sidecar, tail: str = "") -> str:
    return sidecar.url(f"/v1.0/state/redisstore{tail}")


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(1000):  # 20 s
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_no_acknowledged_write_is_lost_when_redis_is_killed_and_restarted(
    procs: Processes, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis", durable=True).start()
    try:
        sidecar = redis_sidecar(procs, server, "writer", tmp_path)
        acked: list[str] = []
        refused: list[httpx.Response] = []
        stop = asyncio.Event()

        async def writer(client: httpx.AsyncClient, worker: int) -> None:
            n = 0
            while not stop.is_set():
                key, n = f"w{worker}-{n}", n + 1
                reply = await client.post(url(sidecar), json=[{"key": key, "value": {"n": n}}])
                (acked.append(key) if reply.status_code == 204 else refused.append(reply))

        async def main() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                writers = [asyncio.create_task(writer(client, w)) for w in range(4)]
                await wait_until(lambda: len(acked) >= 100, "writes before the kill")
                await asyncio.to_thread(server.kill)
                await wait_until(lambda: len(refused) >= 20, "refused writes while redis is down")
                await asyncio.to_thread(server.start)
                back = len(acked)
                await wait_until(lambda: len(acked) >= back + 100, "writes after the restart")
                stop.set()
                await asyncio.gather(*writers)

        asyncio.run(main())
        assert sidecar.proc.poll() is None, "the sidecar kept running"
        for reply in refused:
            assert reply.status_code == 500, reply.text
            assert reply.json()["errorCode"] == "ERR_STATE_SAVE"
            assert server.address in reply.json()["message"]
        first = httpx.get(url(sidecar, "/w0-0"))
        assert first.status_code == 200, "the first write, from before the kill, is still there"
        found = httpx.post(url(sidecar, "/bulk"), json={"keys": acked}, timeout=30).json()
        missing = [item["key"] for item in found if "data" not in item]
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged writes lost: {missing[:5]}"
    finally:
        server.stop()


def test_a_sidecar_started_before_redis_serves_once_redis_is_up(procs: Processes, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    try:
        sidecar = redis_sidecar(procs, server, "early", tmp_path)
        down = httpx.get(url(sidecar, "/k"))
        assert (down.status_code, down.json()["errorCode"]) == (500, "ERR_STATE_GET")
        assert server.address in down.json()["message"]
        assert "state store redisstore (state.redis) is unreachable" in sidecar.output()
        server.start()
        assert httpx.post(url(sidecar), json=[{"key": "k", "value": 1}]).status_code == 204
        got = httpx.get(url(sidecar, "/k"))
        assert (got.status_code, got.json(), got.headers["etag"]) == (200, 1, "1")
    finally:
        server.stop()


def test_state_is_stored_in_dapr_redis_layout_with_version_etags(
    procs: Processes, server: RedisServer, tmp_path: Path
) -> None:
    sidecar = redis_sidecar(procs, server, "layout", tmp_path)
    httpx.post(url(sidecar), json=[{"key": "order", "value": {"id": 1}}]).raise_for_status()
    httpx.post(url(sidecar), json=[{"key": "order", "value": {"id": 2}}]).raise_for_status()
    direct = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        assert direct.hgetall("layout||order") == {b"data": b'{"id":2}', b"version": b"2"}
        direct.set("layout||plain", b'"written by another tool"')
    finally:
        direct.close()
    assert httpx.get(url(sidecar, "/order")).headers["etag"] == "2"
    assert httpx.get(url(sidecar, "/plain")).json() == "written by another tool"


def test_a_redis_save_is_traced_from_the_api_span_to_the_redis_span(
    procs: Processes, server: RedisServer, tmp_path: Path
) -> None:
    sidecar = redis_sidecar(procs, server, "traced", tmp_path)
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    reply = httpx.post(url(sidecar), json=[{"key": "k", "value": 1}],
                       headers={"traceparent": f"00-{trace_id}-{parent}-01"})  # fmt: skip
    assert reply.status_code == 204
    spans = wait_for_spans(procs.home, trace_id, 2)
    api, db = sorted(spans, key=lambda span: span.kind != "SERVER")
    assert (api.name, api.parent_id) == ("POST /v1.0/state/{storeName}", parent)
    assert (db.kind, db.name, db.parent_id) == ("CLIENT", "SET redisstore", api.span_id)
    assert db.attributes["db.system.name"] == "redis"
    assert db.attributes["db.namespace"] == "0"
    assert db.attributes["server.address"] == "127.0.0.1"
    assert db.attributes["server.port"] == server.port


def test_50_concurrent_read_modify_write_loops_on_redis_lose_no_update(
    procs: Processes, server: RedisServer, tmp_path: Path
) -> None:
    increment_concurrently(url(redis_sidecar(procs, server, "counter", tmp_path)))

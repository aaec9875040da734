"""Dapr's state HTTP API through a real sidecar, on the embedded default store (SQLite)."""

from __future__ import annotations

import asyncio
import secrets
import textwrap
from pathlib import Path

import httpx

from tests.runtime.test_tracing import wait_for_spans
from tests.support import Processes


def store_url(sidecar: object, tail: str = "", store: str = "statestore") -> str:
    return sidecar.url(f"/v1.0/state/{store}{tail}")  # type: ignore[attr-defined]


def test_save_get_delete_with_etags_and_dapr_errors(procs: Processes) -> None:
    s = procs.sidecar("stateful")
    with httpx.Client() as client:
        saved = client.post(
            store_url(s), json=[{"key": "order", "value": {"id": 7}}, {"key": "s", "value": "txt"}]
        )
        assert saved.status_code == 204
        got = client.get(store_url(s, "/order"))
        assert (got.status_code, got.json(), got.headers["content-type"]) == (
            200,
            {"id": 7},
            "application/json",
        )
        etag = got.headers["etag"]
        assert client.get(store_url(s, "/s")).text == '"txt"'
        assert client.get(store_url(s, "/missing")).status_code == 204

        stale = client.post(store_url(s), json=[{"key": "order", "value": 1, "etag": "stale"}])
        assert (stale.status_code, stale.json()["errorCode"]) == (409, "ERR_STATE_SAVE")
        assert client.post(store_url(s), json=[{"key": "order", "value": 2, "etag": etag}]).status_code == 204
        bad_delete = client.delete(store_url(s, "/order"), headers={"If-Match": etag})
        assert (bad_delete.status_code, bad_delete.json()["errorCode"]) == (409, "ERR_STATE_DELETE")
        current = client.get(store_url(s, "/order")).headers["etag"]
        assert client.delete(store_url(s, "/order"), headers={"If-Match": current}).status_code == 204
        assert client.get(store_url(s, "/order")).status_code == 204

        bulk = client.post(store_url(s, "/bulk"), json={"keys": ["s", "order"]})
        assert bulk.status_code == 200
        assert bulk.json()[0]["data"] == "txt" and bulk.json()[0]["etag"]
        assert bulk.json()[1] == {"key": "order"}

        unknown = client.get(store_url(s, "/x", store="nostore"))
        assert (unknown.status_code, unknown.json()["errorCode"]) == (400, "ERR_STATE_STORE_NOT_FOUND")
        malformed = client.post(store_url(s), json=[{"key": "ok", "value": 1}, {"value": 2}])
        assert (malformed.status_code, malformed.json()["errorCode"]) == (400, "ERR_MALFORMED_REQUEST")
        assert "item 1: field key is missing" in malformed.json()["message"]
        not_json = client.post(store_url(s), content=b"[{oops")
        assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["message"]
        separator = client.post(store_url(s), json=[{"key": "a||b", "value": 1}])
        assert separator.status_code == 400 and "can't contain '||'" in separator.json()["message"]


def test_a_transaction_is_all_or_nothing(procs: Processes) -> None:
    s = procs.sidecar("tx")
    ops = {"operations": [
        {"operation": "upsert", "request": {"key": "a", "value": 1}},
        {"operation": "upsert", "request": {"key": "b", "value": 2}},
    ]}  # fmt: skip
    assert httpx.post(store_url(s, "/transaction"), json=ops).status_code == 204
    failing = {"operations": [
        {"operation": "upsert", "request": {"key": "c", "value": 3}},
        {"operation": "delete", "request": {"key": "a", "etag": "wrong"}},
    ]}  # fmt: skip
    reply = httpx.post(store_url(s, "/transaction"), json=failing)
    assert (reply.status_code, reply.json()["errorCode"]) == (409, "ERR_STATE_TRANSACTION")
    assert httpx.get(store_url(s, "/c")).status_code == 204
    assert httpx.get(store_url(s, "/a")).json() == 1


def test_keys_are_prefixed_by_app_id_unless_the_store_says_otherwise(
    procs: Processes, tmp_path: Path
) -> None:
    one, two = procs.sidecar("one"), procs.sidecar("two")
    httpx.post(store_url(one), json=[{"key": "k", "value": "from one"}])
    assert httpx.get(store_url(two, "/k")).status_code == 204, "apps do not see each other's keys"
    resources = tmp_path / "res"
    resources.mkdir()
    (resources / "shared.yaml").write_text(
        textwrap.dedent(f"""\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: shared
        spec:
          type: state.sqlite
          version: v1
          metadata:
          - name: databasePath
            value: {tmp_path / "shared.db"}
          - name: keyPrefix
            value: none
        """)
    )
    (resources / "scratch.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: scratch\n"
        "spec:\n  type: state.in-memory\n  version: v1\n"
    )
    three = procs.sidecar("three", extra_args=["--resources-path", str(resources)])
    types = {c["name"]: c["type"] for c in httpx.get(three.url("/v1.0/metadata")).json()["components"]}
    assert types == {"shared": "state.sqlite", "scratch": "state.in-memory"}
    four = procs.sidecar("four", extra_args=["--resources-path", str(resources)])
    httpx.post(store_url(three, store="shared"), json=[{"key": "k", "value": "shared"}])
    assert httpx.get(store_url(four, "/k", store="shared")).json() == "shared"


def test_50_concurrent_read_modify_write_loops_lose_no_update(procs: Processes) -> None:
    s = procs.sidecar("counter")
    httpx.post(store_url(s), json=[{"key": "n", "value": 0}])
    per_loop = 4

    async def loop(client: httpx.AsyncClient) -> None:
        done = 0
        while done < per_loop:
            got = await client.get(store_url(s, "/n"))
            write = [{"key": "n", "value": got.json() + 1, "etag": got.headers["etag"]}]
            reply = await client.post(store_url(s), json=write)
            if reply.status_code == 409:
                continue
            assert reply.status_code == 204, reply.text
            done += 1

    async def main() -> None:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as client:
            await asyncio.gather(*(loop(client) for _ in range(50)))

    asyncio.run(main())
    assert httpx.get(store_url(s, "/n")).json() == 50 * per_loop


def test_a_save_is_traced_from_the_api_span_to_the_store_span(procs: Processes) -> None:
    s = procs.sidecar("traced")
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    reply = httpx.post(store_url(s), json=[{"key": "k", "value": 1}],
                       headers={"traceparent": f"00-{trace_id}-{parent}-01"})  # fmt: skip
    assert reply.status_code == 204
    api, db = sorted(wait_for_spans(procs.home, trace_id, 2), key=lambda span: span.kind != "SERVER")
    assert (api.kind, api.name, api.parent_id) == ("SERVER", "POST /v1.0/state/{storeName}", parent)
    assert api.attributes["outrig.operation"] == "state.save"
    assert (db.kind, db.name, db.parent_id) == ("CLIENT", "SET statestore", api.span_id)
    assert db.attributes["db.system.name"] == "sqlite"
    assert db.attributes["db.operation.name"] == "SET"
    assert db.attributes["db.namespace"].endswith("state.db")
    assert db.attributes["outrig.hop"] == "component"
    assert "http.request.method" not in db.attributes

"""Dapr's state HTTP API through a real sidecar, on the embedded default store (SQLite)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx

from tests.runtime.components.state.test_query import DOCS_QUERY, PEOPLE
from tests.runtime.test_tracing import wait_for_spans
from tests.support import Processes, component_yaml, resource_folder


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
        consistency = client.post(
            store_url(s), json=[{"key": "k", "value": 1, "options": {"consistency": "x"}}]
        )
        assert consistency.status_code == 400
        assert (
            "item 0: options.consistency must be eventual or strong, got 'x'" in consistency.json()["message"]
        )
        strong = [{"key": "k", "value": 1, "options": {"consistency": "strong", "concurrency": "last-write"}}]
        assert client.post(store_url(s), json=strong).status_code == 204
        options = client.post(store_url(s), json=[{"key": "k", "value": 1, "options": "strong"}])
        assert options.status_code == 400 and "options must be an object" in options.json()["message"]
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
    shared = component_yaml(
        "shared", "state.sqlite", databasePath=str(tmp_path / "shared.db"), keyPrefix="none"
    )
    scratch = component_yaml("scratch", "state.in-memory")
    resources = resource_folder(tmp_path, {"shared.yaml": shared, "scratch.yaml": scratch})
    three = procs.sidecar("three", extra_args=["--resources-path", str(resources)])
    types = {c["name"]: c["type"] for c in httpx.get(three.url("/v1.0/metadata")).json()["components"]}
    assert types == {"shared": "state.sqlite", "scratch": "state.in-memory", "pubsub": "pubsub.sqlite"}
    four = procs.sidecar("four", extra_args=["--resources-path", str(resources)])
    httpx.post(store_url(three, store="shared"), json=[{"key": "k", "value": "shared"}])
    assert httpx.get(store_url(four, "/k", store="shared")).json() == "shared"


def increment_concurrently(base: str, loops: int = 50, per_loop: int = 2) -> None:
    """`loops` concurrent read-modify-write loops on one key, each retrying on 409 until it
    has added `per_loop`: with working etags the count is exact."""
    httpx.post(base, json=[{"key": "n", "value": 0}]).raise_for_status()

    async def loop(client: httpx.AsyncClient) -> None:
        done = 0
        while done < per_loop:
            got = await client.get(f"{base}/n")
            write = [{"key": "n", "value": got.json() + 1, "etag": got.headers["etag"]}]
            reply = await client.post(base, json=write)
            if reply.status_code == 409:
                continue
            assert reply.status_code == 204, reply.text
            done += 1

    async def main() -> None:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=loops)) as client:
            await asyncio.gather(*(loop(client) for _ in range(loops)))

    asyncio.run(main())
    assert httpx.get(f"{base}/n").json() == loops * per_loop


def test_50_concurrent_read_modify_write_loops_lose_no_update(procs: Processes) -> None:
    increment_concurrently(store_url(procs.sidecar("counter")))


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


def test_the_alpha_query_filters_sorts_and_pages_one_apps_keys(procs: Processes) -> None:
    hr, payroll = procs.sidecar("hr"), procs.sidecar("payroll")
    url = hr.url("/v1.0-alpha1/state/statestore/query")
    assert (
        httpx.post(store_url(hr), json=[{"key": k, "value": v} for k, v in PEOPLE.items()]).status_code == 204
    )
    theirs = [{"key": "1", "value": PEOPLE["1"]}, {"key": "99", "value": PEOPLE["4"]}]
    assert httpx.post(store_url(payroll), json=theirs).status_code == 204

    trace_id = secrets.token_hex(16)
    first = httpx.post(
        url, json=DOCS_QUERY, headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    )
    assert first.status_code == 200, first.text
    assert [r["key"] for r in first.json()["results"]] == ["1", "4", "10"]
    assert first.json()["token"] == "3"
    one = first.json()["results"][0]
    assert one["data"] == PEOPLE["1"] and one["etag"] == httpx.get(store_url(hr, "/1")).headers["etag"]
    second = httpx.put(url, json={**DOCS_QUERY, "page": {"limit": 3, "token": "3"}})
    assert [r["key"] for r in second.json()["results"]] == ["9", "7", "3"]
    assert "token" not in second.json(), "the last page has no token"

    everyone = httpx.post(payroll.url("/v1.0-alpha1/state/statestore/query"), json={"filter": {}})
    assert [r["key"] for r in everyone.json()["results"]] == ["1", "99"], "another app's keys stay out"
    nothing = httpx.post(url, json={"filter": {"EQ": {"state": "TX"}}})
    assert (nothing.status_code, nothing.content) == (204, b""), "Dapr answers an empty result with 204"

    malformed = httpx.post(url, json={"filter": {"OR": [{"EQ": {"state": "CA"}}, {"EQ": {"a": 1, "b": 2}}]}})
    assert (malformed.status_code, malformed.json()) == (400, {
        "errorCode": "ERR_MALFORMED_REQUEST",
        "message": 'query filter.OR[1]: EQ takes one {"path": value} pair, got 2',
    })  # fmt: skip
    not_json = httpx.post(url, content=b"{filter")
    assert not_json.status_code == 400 and "query: the body is not valid JSON" in not_json.json()["message"]
    unknown = httpx.post(hr.url("/v1.0-alpha1/state/nostore/query"), json={})
    assert (unknown.status_code, unknown.json()["errorCode"]) == (400, "ERR_STATE_STORE_NOT_FOUND")
    wrong_verb = httpx.get(url)
    assert (wrong_verb.status_code, wrong_verb.json()["errorCode"]) == (405, "ERR_METHOD_NOT_ALLOWED")

    api, db = sorted(wait_for_spans(procs.home, trace_id, 2), key=lambda span: span.kind != "SERVER")
    assert api.name == "POST /v1.0-alpha1/state/{storeName}/query"
    assert api.attributes["outrig.operation"] == "state.query"
    assert (db.name, db.parent_id, db.attributes["db.operation.name"]) == (
        "QUERY statestore",
        api.span_id,
        "QUERY",
    )

"""Dapr's distributed lock API on `lock.redis`, behind real sidecars and a real redis-server."""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import time
from pathlib import Path

import httpx
import redis

from tests.redis_server import RedisServer
from tests.runtime.test_tracing import wait_for_spans
from tests.support import Processes, Sidecar, component_yaml, resource_folder

STORE = "lockstore"


def lock_sidecar(
    procs: Processes, server: RedisServer, app_id: str, tmp_path: Path, **metadata: object
) -> Sidecar:
    component = component_yaml(STORE, "lock.redis", redisHost=server.address, **metadata)
    resources = resource_folder(tmp_path, {"lock.yaml": component}, folder=f"res-{app_id}")
    return procs.sidecar(app_id, extra_args=["--resources-path", str(resources)])


def lock(
    sidecar: Sidecar, resource: str, owner: str, expiry: object = 10, store: str = STORE
) -> httpx.Response:
    body = {"resourceId": resource, "lockOwner": owner, "expiryInSeconds": expiry}
    return httpx.post(sidecar.url(f"/v1.0-alpha1/lock/{store}"), json=body, timeout=30)


def unlock(sidecar: Sidecar, resource: str, owner: str, store: str = STORE) -> httpx.Response:
    body = {"resourceId": resource, "lockOwner": owner}
    return httpx.post(sidecar.url(f"/v1.0-alpha1/unlock/{store}"), json=body, timeout=30)


def test_lock_unlock_statuses_owner_checks_and_dapr_key_layout(
    procs: Processes, redis_server: RedisServer, tmp_path: Path
) -> None:
    sidecar = lock_sidecar(procs, redis_server, "locker", tmp_path)
    client = redis.Redis(port=redis_server.port)
    resource = f"res-{secrets.token_hex(4)}"

    taken = lock(sidecar, resource, "alice")
    assert (taken.status_code, taken.json()) == (200, {"success": True})
    assert client.get(f"lock||locker||{resource}") == b"alice"  # Dapr's layout, appid prefix
    assert 0 < client.pttl(f"lock||locker||{resource}") <= 10_000
    assert lock(sidecar, resource, "bob").json() == {"success": False}  # held by another owner
    assert lock(sidecar, resource, "alice").json() == {"success": False}  # not reentrant, as Dapr's

    assert unlock(sidecar, resource, "bob").json() == {"status": 2}  # LOCK_BELONGS_TO_OTHERS
    assert client.get(f"lock||locker||{resource}") == b"alice"
    assert unlock(sidecar, resource, "alice").json() == {"status": 0}  # SUCCESS
    assert unlock(sidecar, resource, "alice").json() == {"status": 1}  # LOCK_DOES_NOT_EXIST
    assert lock(sidecar, resource, "bob").json() == {"success": True}


def test_a_lock_expires_after_its_expiry(procs: Processes, redis_server: RedisServer, tmp_path: Path) -> None:
    sidecar = lock_sidecar(procs, redis_server, "expiring", tmp_path)
    resource = f"res-{secrets.token_hex(4)}"
    assert lock(sidecar, resource, "alice", expiry=1).json() == {"success": True}
    assert lock(sidecar, resource, "bob").json() == {"success": False}
    deadline = time.monotonic() + 10
    while lock(sidecar, resource, "bob").json() != {"success": True}:
        assert time.monotonic() < deadline, "the lock never expired"
        time.sleep(0.1)
    assert unlock(sidecar, resource, "alice").json() == {"status": 2}  # alice's lease is gone
    assert unlock(sidecar, resource, "bob").json() == {"status": 0}


MALFORMED = [
    ({"lockOwner": "a", "expiryInSeconds": 5}, "ResourceId is empty"),
    ({"resourceId": "", "lockOwner": "a", "expiryInSeconds": 5}, "ResourceId is empty"),
    ({"resourceId": "r", "expiryInSeconds": 5}, "LockOwner is empty"),
    ({"resourceId": "r", "lockOwner": "a"}, "ExpiryInSeconds is not positive"),
    ({"resourceId": "r", "lockOwner": "a", "expiryInSeconds": 0}, "ExpiryInSeconds is not positive"),
    ({"resourceId": "r", "lockOwner": "a", "expiryInSeconds": -3}, "ExpiryInSeconds is not positive"),
    ({"resourceId": "r", "lockOwner": "a", "expiryInSeconds": 1.5}, "whole number"),
    ({"resourceId": "r", "lockOwner": "a", "expiryInSeconds": 2**31}, "the most is 2147483647"),
    ({"resourceId": "r", "lockOwner": "a", "expiryInSeconds": "9" * 30}, "the most is 2147483647"),
    ({"resourceId": "a||b", "lockOwner": "a", "expiryInSeconds": 5}, "can't contain '||'"),
    ({"resourceId": 7, "lockOwner": "a", "expiryInSeconds": 5}, "resourceId must be a string"),
    ([1, 2], "must be a JSON object"),
]


def test_malformed_lock_requests_are_400_naming_the_field(
    procs: Processes, redis_server: RedisServer, tmp_path: Path
) -> None:
    sidecar = lock_sidecar(procs, redis_server, "strict", tmp_path)
    for body, fragment in MALFORMED:
        reply = httpx.post(sidecar.url(f"/v1.0-alpha1/lock/{STORE}"), json=body)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["errorCode"] == "ERR_MALFORMED_REQUEST", body
        assert fragment in reply.json()["message"], (body, reply.json())
    biggest = lock(sidecar, f"res-{secrets.token_hex(4)}", "a", expiry=2**31 - 1)
    assert biggest.json() == {"success": True}


def test_lock_errors_unknown_store_bad_json_wrong_verb_unlock_without_owner(
    procs: Processes, redis_server: RedisServer, tmp_path: Path
) -> None:
    sidecar = lock_sidecar(procs, redis_server, "errors", tmp_path)
    for reply in (lock(sidecar, "r", "a", store="nope"), unlock(sidecar, "r", "a", store="nope")):
        assert reply.status_code == 400
        assert reply.json()["errorCode"] == "ERR_LOCK_STORE_NOT_FOUND"
        assert "nope" in reply.json()["message"] and STORE in reply.json()["message"]
    garbled = httpx.post(sidecar.url(f"/v1.0-alpha1/lock/{STORE}"), content=b"{not json")
    assert (garbled.status_code, garbled.json()["errorCode"]) == (400, "ERR_MALFORMED_REQUEST")
    assert "not valid JSON" in garbled.json()["message"]
    no_owner = httpx.post(sidecar.url(f"/v1.0-alpha1/unlock/{STORE}"), json={"resourceId": "r"})
    assert (no_owner.status_code, no_owner.json()["errorCode"]) == (400, "ERR_MALFORMED_REQUEST")
    assert "LockOwner is empty" in no_owner.json()["message"]
    wrong_verb = httpx.get(sidecar.url(f"/v1.0-alpha1/lock/{STORE}"))
    assert (wrong_verb.status_code, wrong_verb.json()["errorCode"]) == (405, "ERR_METHOD_NOT_ALLOWED")
    components = httpx.get(sidecar.url("/v1.0/metadata")).json()["components"]
    assert {"name": STORE, "type": "lock.redis", "version": "v1", "capabilities": []} in components


def test_lock_without_any_lock_store_is_not_configured(procs: Processes) -> None:
    sidecar = procs.sidecar("bare")
    reply = httpx.post(
        sidecar.url("/v1.0-alpha1/lock/lockstore"),
        json={"resourceId": "r", "lockOwner": "a", "expiryInSeconds": 5},
    )
    assert reply.status_code == 500
    assert reply.json()["errorCode"] == "ERR_LOCK_STORE_NOT_CONFIGURED"


def test_a_failing_redis_is_err_try_lock_and_err_unlock(procs: Processes, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    sidecar = lock_sidecar(procs, server, "failing", tmp_path)
    server.stop()
    taken, released = lock(sidecar, "r", "a"), unlock(sidecar, "r", "a")
    assert (taken.status_code, taken.json()["errorCode"]) == (500, "ERR_TRY_LOCK")
    assert (released.status_code, released.json()["errorCode"]) == (500, "ERR_UNLOCK")
    assert server.address in taken.json()["message"]


def test_a_lock_call_is_traced_from_the_api_span_to_the_redis_span(
    procs: Processes, redis_server: RedisServer, tmp_path: Path
) -> None:
    sidecar = lock_sidecar(procs, redis_server, "traced-lock", tmp_path)
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    reply = httpx.post(
        sidecar.url(f"/v1.0-alpha1/lock/{STORE}"),
        json={"resourceId": secrets.token_hex(4), "lockOwner": "a", "expiryInSeconds": 5},
        headers={"traceparent": f"00-{trace_id}-{parent}-01"},
    )
    assert reply.json() == {"success": True}
    spans = wait_for_spans(procs.home, trace_id, 2)
    api, db = sorted(spans, key=lambda span: span.kind != "SERVER")
    assert (api.name, api.parent_id) == ("POST /v1.0-alpha1/lock/{storeName}", parent)
    assert (db.kind, db.name, db.parent_id) == ("CLIENT", f"SET {STORE}", api.span_id)
    assert db.attributes["db.system.name"] == "redis"
    assert db.attributes["outrig.operation"] == "lock.try_lock"


def test_two_sidecars_contending_for_one_lock_never_overlap(
    procs: Processes, redis_server: RedisServer, tmp_path: Path
) -> None:
    """200 attempts from each of two sidecars (of different apps sharing the lock through
    `keyPrefix: name`); a holder records enter (after its lock answered success) and exit
    (before it asks to unlock): the intervals never overlap."""
    sidecars = [
        lock_sidecar(procs, redis_server, f"contender-{n}", tmp_path, keyPrefix="name") for n in range(2)
    ]
    resource = f"shared-{secrets.token_hex(4)}"
    held: list[tuple[float, float, int]] = []
    unlocked: list[int] = []

    async def contend(client: httpx.AsyncClient, sidecar: Sidecar, n: int) -> int:
        wins = 0
        for attempt in range(200):
            owner = f"owner-{n}-{attempt}"
            body = {"resourceId": resource, "lockOwner": owner, "expiryInSeconds": 30}
            reply = await client.post(sidecar.url(f"/v1.0-alpha1/lock/{STORE}"), json=body)
            assert reply.status_code == 200, reply.text
            if reply.json()["success"]:
                enter = time.monotonic()
                wins += 1
                await asyncio.sleep(random.uniform(0, 0.004))
                exit_ = time.monotonic()
                held.append((enter, exit_, n))
                release = {"resourceId": resource, "lockOwner": owner}
                answer = await client.post(sidecar.url(f"/v1.0-alpha1/unlock/{STORE}"), json=release)
                unlocked.append(answer.json()["status"])
            else:
                await asyncio.sleep(random.uniform(0, 0.002))
        return wins

    async def main() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            return list(await asyncio.gather(*(contend(client, s, n) for n, s in enumerate(sidecars))))

    wins = asyncio.run(main())
    assert sum(wins) == len(held) > 0
    assert all(status == 0 for status in unlocked), unlocked  # every holder released its own lock
    ordered = sorted(held)
    for (_, previous_exit, who), (enter, _, next_who) in itertools.pairwise(ordered):
        assert enter >= previous_exit, f"{next_who} entered at {enter} before {who} left at {previous_exit}"
    print(f"lock contention: {len(held)} of 400 attempts won ({wins[0]} / {wins[1]} per sidecar)")

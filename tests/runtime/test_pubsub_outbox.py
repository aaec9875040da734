"""Dapr's transactional outbox: a committed transaction's items arrive on the topic, a
failed one's never do. Real sidecar, real Redis for the state and the broker."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import httpx

from tests.redis_server import RedisServer
from tests.runtime.test_configured_pipeline import start_failure
from tests.support import Processes, component_yaml, deliveries, resource_folder, wait_for_deliveries


def outbox_resources(tmp_path: Path, redis: RedisServer, pubsub: str = "broker") -> Path:
    state = component_yaml(
        "store",
        "state.redis",
        redisHost=redis.address,
        outboxPublishPubsub=pubsub,
        outboxPublishTopic="orders",
    )
    broker = component_yaml("broker", "pubsub.redis", redisHost=redis.address, processingTimeout="1s")
    return resource_folder(tmp_path, {"state.yaml": state, "broker.yaml": broker})


def test_committed_transactions_publish_their_items_and_failed_ones_nothing(
    procs: Processes, redis_server: RedisServer, tmp_path: Path
) -> None:
    _, port = procs.subscriber_app([{"pubsubname": "broker", "topic": "orders", "route": "/orders"}])
    sidecar = procs.sidecar(
        f"shop-{secrets.token_hex(3)}", app_port=port,
        extra_args=["--resources-path", str(outbox_resources(tmp_path, redis_server))],
    )  # fmt: skip
    url = sidecar.url("/v1.0/state/store/transaction")
    m = secrets.token_hex(4)
    with httpx.Client(timeout=30) as client:
        client.post(sidecar.url("/v1.0/state/store"), json=[{"key": "stock", "value": 1}]).raise_for_status()
        etag = client.get(sidecar.url("/v1.0/state/store/stock")).headers["etag"]
        committed = {
            "operations": [
                {"operation": "upsert", "request": {"key": f"order-{m}", "value": {"id": m, "n": 1}}},
                {"operation": "upsert", "request": {"key": "stock", "value": 0, "etag": etag}},
                {"operation": "delete", "request": {"key": "nothing"}},
            ]
        }
        assert client.post(url, json=committed).status_code == 204
        failed = {
            "operations": [
                {"operation": "upsert", "request": {"key": f"lost-{m}", "value": {"id": f"lost-{m}"}}},
                {"operation": "upsert", "request": {"key": "stock", "value": -1, "etag": etag}},  # stale now
            ]
        }
        refused = client.post(url, json=failed)
        assert (refused.status_code, refused.json()["errorCode"]) == (409, "ERR_STATE_TRANSACTION")
        assert client.get(sidecar.url(f"/v1.0/state/store/lost-{m}")).status_code == 204

    wait_for_deliveries(port, lambda got: len(got) >= 2)
    time.sleep(2)  # a failed transaction's items would have come by now
    events = [r["event"] for r in deliveries(port)]
    by_subject = {e["subject"]: e for e in events}
    assert sorted(by_subject) == [f"order-{m}", "stock"], events
    assert len(events) == 2, "each committed item once; nothing of the failed transaction"
    assert by_subject[f"order-{m}"]["data"] == {"id": m, "n": 1}
    assert by_subject["stock"]["data"] == 0
    assert all(e["topic"] == "orders" and e["pubsubname"] == "broker" for e in events)
    assert not any(f"lost-{m}" in json.dumps(e) for e in events)


def test_an_outbox_naming_an_unknown_pubsub_stops_startup(redis_server: RedisServer, tmp_path: Path) -> None:
    resources = outbox_resources(tmp_path, redis_server, pubsub="nosuch")
    err = start_failure(tmp_path, "--resources-path", str(resources))
    assert f"{resources / 'state.yaml'}:12:" in err and "Component 'store'" in err
    assert "field spec.metadata[1].value: no pubsub component with this name (value: 'nosuch')" in err
    assert "configured pubsubs: broker" in err

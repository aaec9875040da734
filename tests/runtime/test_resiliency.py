"""Resiliency policies through real sidecars: retries (visible in the trace), timeouts,
circuit breakers, status matching, pub/sub redelivery then dead letter, the retry budget
under a storm, and bad Resiliency files."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import httpx

from tests.runtime.test_configured_pipeline import start_failure
from tests.runtime.test_metrics import scrape, series
from tests.runtime.test_tracing import wait_for_spans
from tests.support import Processes, Sidecar, component_yaml, deliveries, resource_folder, wait_for_deliveries

POLICIES = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: policies
spec:
  policies:
    timeouts:
      quick: 500ms
    retries:
      fast:
        policy: constant
        duration: 20ms
        maxRetries: 3
      storm:
        policy: constant
        duration: 10ms
        maxRetries: 5
      storm-unbudgeted:
        policy: constant
        duration: 10ms
        maxRetries: 5
        outrigRetryBudget:
          enabled: false
    circuitBreakers:
      cb:
        maxRequests: 1
        timeout: 2s
        trip: consecutiveFailures >= 3
  targets:
    apps:
      back:
        retry: fast
      slow:
        timeout: quick
      fragile:
        circuitBreaker: cb
      stormy:
        retry: storm
      stormy-unbudgeted:
        retry: storm-unbudgeted
    components:
      pubsub:
        inbound:
          retry: fast
"""


def caller(procs: Processes, tmp_path: Path, extra: dict[str, str] | None = None) -> Sidecar:
    files = {"resiliency.yaml": POLICIES, **(extra or {})}
    return procs.sidecar("front", extra_args=["--resources-path", str(resource_folder(tmp_path, files))])


def traced(trace_id: str) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}


def test_retries_until_success_each_attempt_a_span_of_its_own(procs: Processes, tmp_path: Path) -> None:
    _, port = procs.echo_app()
    procs.sidecar("back", app_port=port)
    front = caller(procs, tmp_path)
    trace_id = secrets.token_hex(16)
    reply = httpx.get(front.invoke_url("back", "flaky/2/k1"), headers=traced(trace_id))
    assert (reply.status_code, reply.text) == (200, "ok after 3 calls")
    assert httpx.get(f"http://127.0.0.1:{port}/calls/k1").text == "3"
    spans = wait_for_spans(procs.home, trace_id, 1 + 3 * 3)
    attempts = sorted(
        (s for s in spans if s.service == "front" and s.kind == "CLIENT"), key=lambda s: s.start_ns
    )
    assert len(attempts) == 3, "two failures and the success: three attempts, three client spans"
    assert [a.attributes.get("http.request.resend_count") for a in attempts] == [None, 1, 2]
    assert [a.attributes["http.response.status_code"] for a in attempts] == [503, 503, 200]

    # 400 is the caller's to fix: not retried (only 5xx are, without `matching`).
    trace_id = secrets.token_hex(16)
    assert httpx.get(front.invoke_url("back", "status/400"), headers=traced(trace_id)).status_code == 400
    wait_for_spans(procs.home, trace_id, 4)
    time.sleep(0.5)  # a retry would have come by now
    spans = wait_for_spans(procs.home, trace_id, 4)
    assert len([s for s in spans if s.service == "front" and s.kind == "CLIENT"]) == 1


def test_a_hanging_app_hits_the_timeout(procs: Processes, tmp_path: Path) -> None:
    procs.sidecar_with_echo("slow")
    front = caller(procs, tmp_path)
    started = time.monotonic()
    reply = httpx.get(front.invoke_url("slow", "hang?seconds=10"), timeout=30)
    took = time.monotonic() - started
    assert reply.status_code == 504 and reply.json()["errorCode"] == "ERR_RESILIENCY_TIMEOUT", reply.text
    assert 0.4 < took < 3, took
    assert httpx.get(front.invoke_url("slow", "hang?seconds=0.1")).status_code == 200


def test_a_dead_app_opens_the_breaker_and_a_probe_closes_it(procs: Processes, tmp_path: Path) -> None:
    app, port = procs.echo_app()
    procs.sidecar("fragile", app_port=port)
    front = caller(procs, tmp_path)
    assert httpx.get(front.invoke_url("fragile", "hello")).status_code == 200
    app.kill()
    app.wait()
    failures = [httpx.get(front.invoke_url("fragile", "hello")) for _ in range(3)]
    assert all(r.status_code == 500 for r in failures), [r.text for r in failures]
    trace_id = secrets.token_hex(16)
    started = time.monotonic()
    fast = httpx.get(front.invoke_url("fragile", "hello"), headers=traced(trace_id))
    took = time.monotonic() - started
    assert fast.status_code == 503 and fast.json()["errorCode"] == "ERR_CIRCUIT_OPEN", fast.text
    assert took < 0.1, f"an open breaker fails fast, took {took:.3f}s"
    states = {
        labels["breaker"]: value for name, labels, value in scrape(front) if name == "outrig_breaker_state"
    }
    assert states == {"app/fragile": 2.0}
    assert series(scrape(front), "outrig_breaker_transitions_total", breaker="app/fragile", state="open")

    procs.echo_app(port)  # the app comes back; after the breaker's 2 s, one probe goes through
    time.sleep(2.2)
    assert httpx.get(front.invoke_url("fragile", "hello")).status_code == 200
    assert httpx.get(front.invoke_url("fragile", "again")).status_code == 200
    states = {
        labels["breaker"]: value for name, labels, value in scrape(front) if name == "outrig_breaker_state"
    }
    assert states == {"app/fragile": 0.0}
    assert "circuit breaker app/fragile: closed -> open" in front.output()
    assert "circuit breaker app/fragile: half-open -> closed" in front.output()


def test_a_delivery_answered_retry_is_retried_per_policy_then_dead_lettered(
    procs: Processes, tmp_path: Path
) -> None:
    subscriptions = [
        {"pubsubname": "pubsub", "topic": "doomed", "route": "/doomed", "deadLetterTopic": "dead"},
        {"pubsubname": "pubsub", "topic": "dead", "route": "/dead"},
    ]
    _, port = procs.subscriber_app(subscriptions, {"/doomed": "retry"})
    files = {"resiliency.yaml": POLICIES, "pubsub.yaml": component_yaml("pubsub", "pubsub.in-memory")}
    folder = resource_folder(tmp_path, files)
    sidecar = procs.sidecar("front", app_port=port, extra_args=["--resources-path", str(folder)])
    assert httpx.post(sidecar.url("/v1.0/publish/pubsub/doomed"), json={"n": 1}).status_code == 204
    wait_for_deliveries(port, lambda got: any(r["route"] == "/dead" for r in got), within=10)
    time.sleep(0.5)
    got = deliveries(port)
    assert [r["route"] for r in got] == ["/doomed"] * 4 + ["/dead"], got
    assert [r["attempt"] for r in got[:4]] == [1, 2, 3, 4], "the first try and 3 retries (maxRetries 3)"


def test_a_retry_budget_keeps_a_storm_of_retries_in_check(procs: Processes, tmp_path: Path) -> None:
    """200 concurrent callers, an app answering 503 to everything, maxRetries 5."""
    ports = {}
    for app_id in ("stormy", "stormy-unbudgeted"):
        _, ports[app_id] = procs.echo_app()
        procs.sidecar(app_id, app_port=ports[app_id])
    front = caller(procs, tmp_path)

    async def storm(app_id: str) -> int:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            replies = await asyncio.gather(
                *(client.get(front.invoke_url(app_id, "flaky/1000000/storm")) for _ in range(200))
            )
            assert all(r.status_code == 503 for r in replies)
            return int((await client.get(f"http://127.0.0.1:{ports[app_id]}/calls/storm")).text)

    with_budget = asyncio.run(storm("stormy"))
    without = asyncio.run(storm("stormy-unbudgeted"))
    print(f"\nattempts per request: {without / 200:.2f} without a budget, {with_budget / 200:.2f} with one")
    assert without == 200 * 6
    # Budget: 20% of the requests plus 10 retries a second over its 10 s window.
    assert with_budget <= 200 + 0.2 * 200 + 10 * 10 + 5, with_budget


def test_a_malformed_resiliency_file_stops_startup_naming_policy_and_field(tmp_path: Path) -> None:
    bad = POLICIES.replace("duration: 20ms", "duration: soon")
    folder = resource_folder(tmp_path, {"resiliency.yaml": bad})
    err = start_failure(tmp_path, "--resources-path", str(folder))
    line = bad.splitlines().index("        duration: soon") + 1
    assert f"{folder / 'resiliency.yaml'}:{line}:" in err and "Resiliency 'policies'" in err
    assert "field spec.policies.retries.fast.duration" in err and "'soon'" in err

    (tmp_path / "t").mkdir()
    trip = POLICIES.replace("consecutiveFailures >= 3", "consecutiveFailure > 3")
    folder = resource_folder(tmp_path / "t", {"resiliency.yaml": trip})
    err = start_failure(tmp_path / "t", "--resources-path", str(folder))
    assert (
        "field spec.policies.circuitBreakers.cb.trip" in err and "did you mean 'consecutiveFailures'" in err
    )

    (tmp_path / "u").mkdir()
    unknown = POLICIES.replace("retry: fast\n      slow", "retry: fastest\n      slow")
    folder = resource_folder(tmp_path / "u", {"resiliency.yaml": unknown})
    err = start_failure(tmp_path / "u", "--resources-path", str(folder))
    assert "field spec.targets.apps.back.retry: no retry policy with this name (value: 'fastest')" in err


def test_metadata_lists_the_loaded_policies(procs: Processes, tmp_path: Path) -> None:
    front = caller(procs, tmp_path)
    [loaded] = httpx.get(front.url("/v1.0/metadata")).json()["resiliencies"]
    assert loaded["name"] == "policies"
    assert loaded["spec"]["targets"]["apps"]["back"] == {"retry": "fast"}

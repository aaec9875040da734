"""End to end, the observability topology `scripts/stack` runs: real Redis, Jaeger and
Prometheus, the three demo services behind their sidecars, and a minute of checkouts. Then:
Jaeger holds each traced checkout as one complete trace (invoke frontend -> orders ->
inventory, the state save, the publish and its delivery, every parent right), Prometheus
scrapes every sidecar, and every query of every dashboard panel answers with data: the
sidecars talk mTLS under an access-control policy, behind a cluster-wide rate limit, and a
side caller reads a secret and a configuration item, takes a lock, calls a flaky binding
behind a circuit breaker, makes a call the policy denies and bursts past the rate limit.

The binaries come from scripts/install-redis.sh, install-jaeger.sh and install-prometheus.sh
(scripts/test runs them), or OUTRIG_REDIS_BIN, OUTRIG_JAEGER_BIN and OUTRIG_PROMETHEUS_BIN.
A missing one fails the test with that hint: it is never skipped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from outrig.runtime.demo.stack import Stack, StackError, Traffic
from tests.test_dashboards_static import concrete, panel_queries

ROOT = Path(__file__).parent.parent
TRAFFIC_SECONDS = 60.0
"""The issue's "after a minute of traffic"."""
SETTLED_SECONDS = 3.0
"""A checkout older than this has all its spans in Jaeger (spans are exported every second),
its delivery included."""

INVOKE_POST = "POST /v1.0/invoke/{appId}/method/{method}"
INVOKE_GET = "GET /v1.0/invoke/{appId}/method/{method}"
SAVE = "POST /v1.0/state/{storeName}"
PUBLISH = "POST /v1.0/publish/{pubsubname}/{topic}"
CALLER = "caller"

# (label, service, span kind, span name, a fragment of its url.path/url.full, parent's label)
CHECKOUT_TRACE = [
    ("checkout", "frontend", "server", INVOKE_POST, "/v1.0/invoke/frontend/method/checkout", CALLER),
    ("frontend app", "frontend", "client", "POST", "/checkout", "checkout"),
    ("invoke orders", "frontend", "server", INVOKE_POST, "/v1.0/invoke/orders/method/orders", "frontend app"),
    ("to orders", "frontend", "client", INVOKE_POST, "/v1.0/invoke/orders/method/orders", "invoke orders"),
    ("orders", "orders", "server", INVOKE_POST, "/v1.0/invoke/orders/method/orders", "to orders"),
    ("orders app", "orders", "client", "POST", "/orders", "orders"),
    ("invoke inventory", "orders", "server", INVOKE_GET, "/method/stock/espresso", "orders app"),
    ("to inventory", "orders", "client", INVOKE_GET, "/method/stock/espresso", "invoke inventory"),
    ("inventory", "inventory", "server", INVOKE_GET, "/method/stock/espresso", "to inventory"),
    ("inventory app", "inventory", "client", "GET", "/stock/espresso", "inventory"),
    ("save", "orders", "server", SAVE, "/v1.0/state/statestore", "orders app"),
    ("store", "orders", "client", "SET statestore", None, "save"),
    ("publish", "orders", "server", PUBLISH, "/v1.0/publish/pubsub/orders", "orders app"),
    ("send", "orders", "producer", "send orders", None, "publish"),
    ("process", "inventory", "consumer", "process orders", None, "send"),
    ("deliver", "inventory", "client", "POST /orders-placed", "/orders-placed", "process"),
]  # fmt: skip
"""One placed order, as Jaeger's API shows it: 16 spans."""


@dataclass
class Loaded:
    stack: Stack
    traffic: Traffic
    """Stopped: what it sent is settled."""
    stopped_at: float


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """The stack, started, after a minute of checkouts (the dashboards' 1m rates cover it)."""
    try:
        stack = Stack(tmp_path_factory.mktemp("stack")).start()
    except StackError as exc:
        pytest.fail(str(exc))
    try:
        traffic = stack.traffic().start()
        deadline = time.monotonic() + TRAFFIC_SECONDS
        while time.monotonic() < deadline:
            stack.check()
            time.sleep(1)
        traffic.stop()
        yield Loaded(stack, traffic, time.time())
    finally:
        stack.stop()


def test_a_minute_of_checkouts_all_answered(loaded: Loaded) -> None:
    traffic = loaded.traffic
    assert not traffic.errors, f"{traffic.summary()}; failures: {traffic.errors[:5]}"
    assert traffic.statuses[201] >= TRAFFIC_SECONDS / 0.5 * 0.8, traffic.summary()
    assert set(traffic.statuses) <= {201, 409}, traffic.summary()


def test_the_side_calls_show_what_the_new_panels_need(loaded: Loaded) -> None:
    """Secrets, configuration, lock and the binding answer; frontend's call to inventory is
    denied by access control (403, over mTLS); bursts of pings are partly rate limited (429);
    the flaky binding fails in bursts (500) and its breaker fails some calls fast (503)."""
    side, summary = loaded.traffic.side, loaded.traffic.side_summary()
    for kind in ("secret", "configuration", "lock", "unlock", "binding", "burst"):
        assert side[kind, 200] > 0, summary
    assert set(s for k, s in side if k == "denied") == {403}, summary
    assert side["burst", 429] > 0, summary
    assert side["binding", 500] > 0 and side["binding", 503] > 0, summary
    assert not any(status == 0 for _, status in side), summary


def test_jaeger_holds_each_traced_checkout_as_one_complete_trace(loaded: Loaded) -> None:
    stack, traffic = loaded.stack, loaded.traffic
    services = httpx.get(f"{stack.jaeger_url}/api/services", timeout=5).json()["data"]
    assert {"frontend", "orders", "inventory"} <= set(services)
    recent = httpx.get(
        f"{stack.jaeger_url}/api/traces", params={"service": "frontend", "limit": 20}, timeout=10
    )
    assert len(recent.json()["data"]) == 20, "Jaeger's search finds the checkouts"

    settled = [
        (trace_id, caller)
        for trace_id, caller, sent in traffic.placed_traces
        if sent < loaded.stopped_at - SETTLED_SECONDS
    ]
    assert len(settled) >= 10, f"too few traced orders placed: {traffic.summary()}"
    problems = {}
    for trace_id, caller in settled:
        found = problems_in(jaeger_trace(stack, trace_id), trace_id, caller)
        if found:
            problems[trace_id] = found
    assert not problems, f"{len(problems)} of {len(settled)} traces are wrong:\n" + "\n".join(
        f"{trace_id}:\n  " + "\n  ".join(found) for trace_id, found in list(problems.items())[:5]
    )


def test_prometheus_scrapes_every_sidecar(loaded: Loaded) -> None:
    stack = loaded.stack
    reply = httpx.get(f"{stack.prometheus_url}/api/v1/targets", timeout=5).json()
    targets = {t["labels"]["app_id"]: t for t in reply["data"]["activeTargets"]}
    assert set(targets) == set(stack.services)
    down = {app: (t["scrapeUrl"], t["lastError"]) for app, t in targets.items() if t["health"] != "up"}
    assert not down, f"Prometheus cannot scrape: {down}"


def test_every_dashboard_query_has_data(loaded: Loaded) -> None:
    stack = loaded.stack
    dashboards = sorted((ROOT / "dashboards").glob("*.json"))
    assert dashboards, "no dashboards/*.json"
    queries = [query for path in dashboards for query in panel_queries(path)]
    assert queries, "the dashboards have no queries"
    failures = []
    with httpx.Client(timeout=10) as client:
        for dashboard, panel, expr in queries:
            try:
                promql = concrete(expr)
            except ValueError as exc:
                failures.append(f"{dashboard} / {panel}: {expr}\n    {exc}")
                continue
            answer = client.get(f"{stack.prometheus_url}/api/v1/query", params={"query": promql}).json()
            if answer.get("status") != "success":
                failures.append(f"{dashboard} / {panel}: {promql}\n    error: {answer.get('error')}")
            elif not (values := sample_values(answer["data"])):
                failures.append(f"{dashboard} / {panel}: {promql}\n    empty result")
            elif all(math.isnan(v) for v in values):
                failures.append(f"{dashboard} / {panel}: {promql}\n    only NaN: {answer['data']['result']}")
    assert not failures, f"{len(failures)} of {len(queries)} dashboard queries fail:\n" + "\n".join(failures)


EVENTS = {
    "peer calls denied by inventory's policy": "sum by (app_id) (outrig_call_duration_seconds_count"
    '{hop="peer", status="403", error_code="ERR_DIRECT_INVOKE"})',
    "rate-limited calls": 'sum by (app_id) (outrig_ratelimit_decisions_total{decision="limited"})',
    "admitted calls": 'sum by (app_id) (outrig_ratelimit_decisions_total{decision="admitted"})',
    "breaker opened": 'sum by (app_id) (outrig_breaker_transitions_total{state="open"})',
    "breaker closed again": 'sum by (app_id) (outrig_breaker_transitions_total{state="closed"})',
    "rate-limit store up": "min by (app_id) (outrig_ratelimit_store_up)",
    "certificate time left": "min by (app_id) (outrig_mtls_certificate_expiry_seconds)",
    **{
        operation: "sum by (app_id) (outrig_call_duration_seconds_count"
        f'{{hop="app-api", operation="{operation}"}})'
        for operation in (
            "secrets.get",
            "configuration.get",
            "lock.try_lock",
            "lock.unlock",
            "bindings.invoke",
        )
    },
    "bindings.get on the component": "sum by (app_id) "
    '(outrig_call_duration_seconds_count{operation="bindings.get"})',
}
"""Each happened, not only a fallback 0: the panels' `or ... * 0` would hide their absence."""
EVERY_APP = {"rate-limit store up", "certificate time left", "admitted calls"}


def test_the_new_panels_show_real_events(loaded: Loaded) -> None:
    missing = []
    with httpx.Client(timeout=10) as client:
        for what, promql in EVENTS.items():
            answer = client.get(
                f"{loaded.stack.prometheus_url}/api/v1/query", params={"query": promql}
            ).json()
            positive = {s["metric"]["app_id"] for s in answer["data"]["result"] if float(s["value"][1]) > 0}
            if not positive or (what in EVERY_APP and positive != set(loaded.stack.services)):
                missing.append(f"{what}: {promql} -> {answer['data']['result']}")
    assert not missing, "\n".join(missing)


def sample_values(data: dict[str, Any]) -> list[float]:
    """Every sample of an instant query's answer (Prometheus' `data`), as floats."""
    result = data["result"]
    if data["resultType"] == "vector":
        return [float(series["value"][1]) for series in result]
    if data["resultType"] == "matrix":
        return [float(value) for series in result for _, value in series["values"]]
    return [float(result[1])] if data["resultType"] == "scalar" else [0.0]


def jaeger_trace(stack: Stack, trace_id: str, timeout: float = 10) -> dict[str, Any]:
    """The trace from Jaeger's API once it has all its spans (or what it has at `timeout`)."""
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {"spans": [], "processes": {}}
    while time.monotonic() < deadline:
        reply = httpx.get(f"{stack.jaeger_url}/api/traces/{trace_id}", timeout=5)
        if reply.status_code == 200 and reply.json().get("data"):
            found = reply.json()["data"][0]
            if len(found["spans"]) >= len(CHECKOUT_TRACE):
                break
        time.sleep(0.2)
    return found


def problems_in(trace: dict[str, Any], trace_id: str, caller: str) -> list[str]:
    """What is wrong with one placed order's trace against CHECKOUT_TRACE (nothing: [])."""
    spans = trace["spans"]
    service = {pid: process["serviceName"] for pid, process in trace["processes"].items()}

    def describe(span: dict[str, Any]) -> str:
        return f"[{service[span['processID']]}] {tags(span).get('span.kind')} {span['operationName']}"

    if len(spans) != len(CHECKOUT_TRACE):
        return [f"{len(spans)} spans, expected {len(CHECKOUT_TRACE)}: {sorted(map(describe, spans))}"]
    problems = []
    ids = {CALLER: caller}
    parents = {}
    for label, app_id, kind, name, url, _parent in CHECKOUT_TRACE:
        matches = [
            s
            for s in spans
            if (service[s["processID"]], tags(s).get("span.kind"), s["operationName"]) == (app_id, kind, name)
            and (url is None or url in str(tags(s).get("url.path", tags(s).get("url.full", ""))))
        ]
        if len(matches) != 1:
            problems.append(f"{len(matches)} spans match {label} ([{app_id}] {kind} {name!r} {url or ''})")
            continue
        [span] = matches
        assert span["traceID"] == trace_id
        ids[label] = span["spanID"]
        parents[label] = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
    for label, *_, parent in CHECKOUT_TRACE:
        if label in parents and parent in ids and parents[label] != [ids[parent]]:
            problems.append(f"{label}: parent {parents[label]}, expected {parent} ({ids[parent]})")
    by_label = {label: s for s in spans for label, span_id in ids.items() if s["spanID"] == span_id}
    expected_tags = {
        "store": {"db.system.name": "redis", "db.operation.name": "SET"},
        "send": {"messaging.system": "redis", "messaging.destination.name": "orders"},
        "process": {"messaging.system": "redis", "messaging.destination.name": "orders"},
    }
    for label, expected in expected_tags.items():
        if label in by_label:
            actual = {k: tags(by_label[label]).get(k) for k in expected}
            if actual != expected:
                problems.append(f"{label}: tags {actual}, expected {expected}")
    return problems


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span["tags"]}

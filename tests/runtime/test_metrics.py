"""Metrics on the metrics port, through real sidecars: what is recorded for each hop, that
every label stays bounded under hostile input, and Dapr's `spec.metric` options."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from tests.support import Processes, Sidecar

SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(sidecar: Sidecar) -> list[tuple[str, dict[str, str], float]]:
    port = metrics_port(sidecar)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = SAMPLE.match(line)
        assert match, f"not Prometheus text: {line!r}"
        labels = dict(LABEL.findall(match["labels"] or ""))
        samples.append((match["name"], labels, float(match["value"])))
    return samples


def metrics_port(sidecar: Sidecar) -> int:
    args = sidecar.proc.args
    assert isinstance(args, list)
    return int(args[args.index("--metrics-port") + 1])


def series(samples: list[tuple[str, dict[str, str], float]], name: str, **match: str) -> list[dict[str, str]]:
    return [
        labels for n, labels, _ in samples if n == name and all(labels.get(k) == v for k, v in match.items())
    ]


def test_every_hop_is_measured_with_bounded_labels(procs: Processes) -> None:
    a = procs.sidecar_with_echo("front")
    b = procs.sidecar_with_echo("back")
    with httpx.Client(timeout=30) as client:
        assert client.post(a.invoke_url("back", "orders/7"), content=b"{}").status_code == 200
        assert (
            client.post(a.url("/v1.0/state/statestore"), json=[{"key": "k", "value": 1}]).status_code == 204
        )
        assert client.get(a.url("/v1.0/state/nosuchstore/k")).status_code == 400
        assert client.post(a.url("/v1.0/publish/pubsub/orders"), json={"n": 1}).status_code == 204
    duration = "outrig_call_duration_seconds_count"
    front, back = scrape(a), scrape(b)
    invoke = series(front, duration, hop="app-api", operation="invoke", target="back")
    assert invoke and invoke[0]["route"] == "/v1.0/invoke/{appId}/method/{method}"
    assert invoke[0]["status"] == "200" and invoke[0]["error_code"] == "" and invoke[0]["app_id"] == "front"
    assert series(back, duration, hop="peer", operation="invoke", target="back", status="200")
    assert series(back, duration, hop="app-channel", operation="invoke", target="back")
    assert series(front, duration, hop="app-api", operation="state.save", target="statestore", status="204")
    assert series(front, duration, hop="component", operation="state.apply", target="statestore")
    assert series(
        front, duration, operation="state.get", status="400", error_code="ERR_STATE_STORE_NOT_FOUND"
    )
    assert series(front, duration, hop="component", operation="pubsub.publish", target="pubsub")
    assert series(front, "outrig_component_up", component="statestore", type="state.sqlite")
    assert series(front, "outrig_component_up", component="pubsub", type="pubsub.sqlite")
    assert series(front, "process_cpu_time_seconds_total", mode="user", app_id="front")
    assert series(front, "process_memory_usage_bytes", app_id="front")
    assert series(front, "outrig_calls_active", hop="app-api", operation="invoke")


def test_no_label_grows_with_paths_keys_or_app_ids(procs: Processes) -> None:
    """1,000 distinct invoke paths, 1,000 state keys and 300 app ids that do not exist:
    every label of every series keeps a small number of values."""
    a = procs.sidecar_with_echo("front")
    with httpx.Client(timeout=30) as client:
        for i in range(1000):
            client.get(a.invoke_url("front", f"items/{i}?q={i}"))
            client.get(a.url(f"/v1.0/state/statestore/key-{i}"))
        for i in range(300):
            client.get(a.invoke_url(f"ghost-{i}", "x"))
    values: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, labels, _ in scrape(a):
        for label, value in labels.items():
            values[(name, label)].add(value)
    assert values, "no metrics"
    worst = max(values.items(), key=lambda item: len(item[1]))
    print(f"\nmost values of one label: {worst[0]} with {len(worst[1])}")
    for (name, label), seen in values.items():
        if label == "le":
            continue
        assert len(seen) <= 101, f"{name}{{{label}}} took {len(seen)} values: {sorted(seen)[:10]}..."
    targets = values[("outrig_call_duration_seconds_count", "target")]
    assert "_other" in targets, "app ids past the first 100 are counted together"
    routes = values[("outrig_call_duration_seconds_count", "route")]
    assert not any("items/" in route or "key-" in route for route in routes), routes


def config_file(tmp_path: Path, metric: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: m\nspec:\n  metric:\n" + metric
    )
    return path


def test_dapr_metric_options_turn_metrics_off_or_set_buckets(procs: Processes, tmp_path: Path) -> None:
    off = config_file(tmp_path, "    enabled: false\n")
    quiet = procs.sidecar("quiet", extra_args=["--config", str(off)])
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{metrics_port(quiet)}/metrics", timeout=2)
    assert httpx.get(quiet.url("/v1.0/healthz")).status_code == 204

    (tmp_path / "b").mkdir()
    buckets = config_file(tmp_path / "b", "    latencyDistributionBuckets: [1, 10, 100]\n")
    coarse = procs.sidecar("coarse", extra_args=["--config", str(buckets)])
    httpx.get(coarse.url("/v1.0/state/statestore/k"))
    edges = {labels["le"] for labels in series(scrape(coarse), "outrig_call_duration_seconds_bucket")}
    assert edges == {"0.001", "0.01", "0.1", "+Inf"}

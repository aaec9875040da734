"""outrig's keyed histograms export exactly what the SDK's own histogram would."""

from __future__ import annotations

import random

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, MetricsData
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from outrig.telemetry.metrics import LATENCY_BUCKETS, MetricsSettings, build_meter_provider
from outrig.telemetry.preaggregated import Preaggregated

KEYS = ("operation", "status")


def points(data: MetricsData, name: str) -> dict[tuple[str, ...], HistogramDataPoint]:
    found = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:  # type: ignore[union-attr]
                        found[tuple(str(point.attributes[k]) for k in KEYS)] = point  # type: ignore[index]
    return found


def test_same_buckets_counts_sums_and_extremes_as_the_sdk() -> None:
    reader = InMemoryMetricReader()
    view = View(instrument_name="sdk", aggregation=ExplicitBucketHistogramAggregation(list(LATENCY_BUCKETS)))
    provider = MeterProvider(metric_readers=[reader], views=[view])
    sdk = provider.get_meter("t").create_histogram("sdk", unit="s")
    ours = Preaggregated().histogram("ours", "s", "", KEYS, LATENCY_BUCKETS)
    rng = random.Random(7)
    values = [*LATENCY_BUCKETS, 0.0, 20.0] + [rng.expovariate(300) for _ in range(5000)]
    for i, value in enumerate(values):
        key = ("invoke", "200" if i % 3 else "500")
        sdk.record(value, dict(zip(KEYS, key, strict=True)))
        ours.record(value, key)
    expected = points(reader.get_metrics_data(), "sdk")  # type: ignore[arg-type]
    metric = ours.metric(0)
    assert metric is not None
    got = {tuple(str(p.attributes[k]) for k in KEYS): p for p in metric.data.data_points}  # type: ignore[union-attr,index]
    assert got.keys() == expected.keys()
    for key, point in got.items():
        want = expected[key]
        assert list(point.bucket_counts) == list(want.bucket_counts)
        assert (point.count, point.min, point.max) == (want.count, want.min, want.max)
        assert abs(point.sum - want.sum) < 1e-9
    provider.shutdown()


def test_scraped_as_prometheus_text_with_the_app_id_beside_sdk_metrics() -> None:
    registry = CollectorRegistry()
    extra = Preaggregated()
    provider = build_meter_provider("orders", MetricsSettings(), registry, extra)
    provider.get_meter("outrig").create_counter("outrig.things").add(1)
    durations = extra.histogram("outrig.call.duration", "s", "Durations", KEYS, (0.001, 0.01))
    durations.record(0.005, ("invoke", "200"))
    text = generate_latest(registry).decode()
    scope = 'otel_scope_name="outrig",otel_scope_schema_url="",otel_scope_version=""'
    labels = f'app_id="orders",le="0.01",operation="invoke",{scope},status="200"'
    bucket = f"outrig_call_duration_seconds_bucket{{{labels}}}"
    assert f"{bucket} 1.0" in text
    assert f'outrig_things_total{{app_id="orders",{scope}}} 1.0' in text
    provider.shutdown()


def test_nothing_recorded_adds_nothing() -> None:
    data = MetricsData(resource_metrics=[])
    assert Preaggregated().merge_into(data, Resource.create({})) is data

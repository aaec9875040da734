"""Meter provider set-up: Prometheus text on the metrics port, OTLP when configured.

Metrics are recorded in the sidecar with the OpenTelemetry SDK and read out two ways:
pulled as Prometheus text (the exporter collects when scraped, in the sidecar's event loop;
about 2 ms a scrape), and pushed over OTLP every `OTEL_METRIC_EXPORT_INTERVAL` when an
`OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT` is set and `OTEL_METRICS_EXPORTER` is not `none`.
Process CPU and memory come from the kernel (`getrusage`, `/proc/self/statm`).
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry

from .preaggregated import Preaggregated

log = logging.getLogger("outrig.telemetry")

LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Seconds. Finer than OpenTelemetry's HTTP default below 25 ms, where sidecar hops and
whole requests of a mesh usually fall: a percentile read from a histogram is only as good
as the buckets around it (measured: with no edge between 10 and 25 ms, a 13 ms checkout
read as a 23 ms p90)."""
APP_ID = "app_id"
"""The label naming the sidecar's app on every series, as Dapr's metrics have it."""
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class MetricsSettings:
    """From the Configuration's `spec.metric` (Dapr's), else the defaults."""

    enabled: bool = True
    latency_buckets: Sequence[float] = LATENCY_BUCKETS


def otlp_metrics_from_environment() -> bool:
    if os.environ.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


class _Merging(MetricReader):
    """A reader that adds outrig's pre-aggregated histograms to each collection it gets."""

    _extra: Preaggregated
    _resource: Resource

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        merged = self._extra.merge_into(metrics_data, self._resource)
        super()._receive_metrics(merged, timeout_millis, **kwargs)  # type: ignore[safe-super]  # the concrete reader next in the MRO


class _PrometheusReader(_Merging, PrometheusMetricReader):
    def __init__(self, registry: CollectorRegistry, extra: Preaggregated, resource: Resource) -> None:
        # `app_id` is a resource attribute the exporter copies onto every series:
        # cheaper than an attribute on every measurement.
        PrometheusMetricReader.__init__(
            self, resource_attribute_filter=lambda key: key == APP_ID, registry=registry
        )
        self._extra, self._resource = extra, resource


class _OtlpReader(_Merging, PeriodicExportingMetricReader):
    def __init__(self, exporter: MetricExporter, extra: Preaggregated, resource: Resource) -> None:
        PeriodicExportingMetricReader.__init__(self, exporter)
        self._extra, self._resource = extra, resource


def build_meter_provider(
    service_name: str,
    settings: MetricsSettings,
    registry: CollectorRegistry,
    preaggregated: Preaggregated | None = None,
) -> MeterProvider:
    """A provider whose metrics `registry` serves as Prometheus text (a registry of its own:
    prometheus_client's default one also holds its own process metrics, which would
    duplicate `process.cpu.time` and `process.memory.usage` under other names), with the
    histograms of `preaggregated` merged into every collection."""
    resource = Resource.create({"service.name": service_name, APP_ID: service_name})
    extra = preaggregated or Preaggregated()
    readers: list[MetricReader] = [_PrometheusReader(registry, extra, resource)]
    if otlp_metrics_from_environment():
        readers.append(_OtlpReader(_otlp_exporter(), extra, resource))
    return MeterProvider(
        metric_readers=readers,
        resource=resource,
        # The Prometheus text format carries no exemplars; checking for a sampled span on
        # every measurement would cost for nothing. Dashboards link to traces instead.
        exemplar_filter=AlwaysOffExemplarFilter(),
    )


def _otlp_exporter() -> MetricExporter:
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc

        return Grpc()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Http

    return Http()


def observe_process(meter: Meter, attributes: dict[str, str] | None = None) -> None:
    """`process.cpu.time` (by mode) and `process.memory.usage` (resident) of this process."""

    attributes = attributes or {}

    def cpu(options: CallbackOptions) -> Iterable[Observation]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return [
            Observation(usage.ru_utime, {**attributes, "mode": "user"}),
            Observation(usage.ru_stime, {**attributes, "mode": "system"}),
        ]

    def memory(options: CallbackOptions) -> Iterable[Observation]:
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
        return [Observation(resident_pages * PAGE_SIZE, attributes)]

    meter.create_observable_counter(
        "process.cpu.time", [cpu], unit="s", description="CPU time of the sidecar"
    )
    meter.create_observable_up_down_counter(
        "process.memory.usage", [memory], unit="By", description="Resident memory of the sidecar"
    )


def shutdown_meter_provider(provider: MeterProvider) -> None:
    try:
        provider.shutdown(timeout_millis=3000)
    except Exception as exc:  # an unreachable OTLP endpoint must not fail the stop
        log.warning("metrics shutdown: %s", exc)

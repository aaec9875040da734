"""Tracer provider set-up: sampling, resource, and where spans are exported.

Spans leave in batches from a background thread (`BatchSpanProcessor` for OTLP, the
trace store's own processor for the local store), so a slow or unreachable collector
never blocks or slows a request: when a queue is full, spans are dropped, not waited on.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from .tracestore import TraceStoreExporter, TraceStoreProcessor

log = logging.getLogger("outrig.telemetry")

TRACE_STORE_FILE = "traces.db"


@dataclass(frozen=True)
class TracingSettings:
    """Where spans go; from the Configuration's `spec.tracing`, else the OTEL_* variables."""

    sampling_rate: float = 1.0
    otlp_endpoint: str | None = None
    """Dapr's `otel.endpointAddress` (`host:port` or a URL); None: use OTEL_* variables."""
    otlp_protocol: str = "grpc"
    otlp_secure: bool = False
    trace_store: Path | None = None
    """The local store to write to, or None; see `outrig.runtime.envvars.OUTRIG_TRACE_STORE`."""


def otlp_from_environment() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def trace_store_path(home: Path) -> Path:
    return home / TRACE_STORE_FILE


def _otlp_exporter(settings: TracingSettings) -> SpanExporter | None:
    if settings.otlp_endpoint is None and not otlp_from_environment():
        return None
    protocol = settings.otlp_protocol
    if settings.otlp_endpoint is None:
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        if settings.otlp_endpoint is None:
            return Grpc()
        endpoint = settings.otlp_endpoint.split("://", 1)[-1]
        return Grpc(endpoint=endpoint, insecure=not settings.otlp_secure)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    if settings.otlp_endpoint is None:
        return Http()
    endpoint = settings.otlp_endpoint
    if "://" not in endpoint:
        endpoint = f"{'https' if settings.otlp_secure else 'http'}://{endpoint}"
    if not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return Http(endpoint=endpoint)


def build_tracer_provider(service_name: str, settings: TracingSettings) -> TracerProvider:
    """A provider for one sidecar; `service.name` is its app id."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.namespace": "outrig"}),
        sampler=ParentBased(TraceIdRatioBased(settings.sampling_rate)),
    )
    exporter = _otlp_exporter(settings)
    if exporter is not None:
        log.info("exporting spans over OTLP (%s)", type(exporter).__module__.rsplit(".", 2)[-2])
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if settings.trace_store is not None:
        provider.add_span_processor(TraceStoreProcessor(TraceStoreExporter(settings.trace_store)))
    return provider


def shutdown_provider(provider: TracerProvider, timeout: float = 3.0) -> None:
    """Flush and stop exporting, giving up after `timeout` seconds (a dead collector must
    not hold up the sidecar's exit)."""
    worker = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        log.warning("span export did not finish within %.1fs at shutdown; spans may be lost", timeout)


def install(provider: TracerProvider) -> None:
    """Make `provider` the global one, so plugins using `trace.get_tracer` share it."""
    trace.set_tracer_provider(provider)

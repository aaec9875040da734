"""Tracer provider set-up: sampling, resource, and where spans are exported.

Spans are created in the sidecar by the OpenTelemetry SDK and exported by its telemetry
agent process (see `shipper`), so neither an OTLP encoder nor a slow or unreachable
collector ever competes with requests: when the pipe to the agent is full, spans are
dropped, not waited on.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from .shipper import SpanShipper

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


def agent_config(service_name: str, settings: TracingSettings) -> dict[str, Any]:
    """What the telemetry agent needs: the service, the store, the OTLP exporter if any."""
    otlp: dict[str, Any] | None = None
    if settings.otlp_endpoint is not None:
        otlp = {
            "endpoint": settings.otlp_endpoint,
            "protocol": settings.otlp_protocol,
            "secure": settings.otlp_secure,
        }
    elif otlp_from_environment():
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        )
        otlp = {"endpoint": None, "protocol": "grpc" if protocol == "grpc" else "http"}
    return {
        "service": service_name,
        "store": str(settings.trace_store) if settings.trace_store else None,
        "otlp": otlp,
    }


def build_tracer_provider(service_name: str, settings: TracingSettings) -> TracerProvider:
    """A provider for one sidecar; `service.name` is its app id."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.namespace": "outrig"}),
        sampler=ParentBased(TraceIdRatioBased(settings.sampling_rate)),
    )
    config = agent_config(service_name, settings)
    if config["otlp"] is not None or config["store"] is not None:
        provider.add_span_processor(SpanShipper(config))
    return provider


def shutdown_provider(provider: TracerProvider) -> None:
    """Ship the last spans and stop the agent (bounded: a dead collector cannot hold us)."""
    provider.shutdown()


def install(provider: TracerProvider) -> None:
    """Make `provider` the global one, so plugins using `trace.get_tracer` share it."""
    trace.set_tracer_provider(provider)

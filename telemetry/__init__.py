"""outrig's telemetry: tracer set-up, the local trace store and its rendering."""

from .render import render_trace
from .tracestore import StoredSpan, TraceStore, TraceStoreExporter
from .tracing import TracingSettings, build_tracer_provider, shutdown_provider, trace_store_path

__all__ = [
    "StoredSpan",
    "TraceStore",
    "TraceStoreExporter",
    "TracingSettings",
    "build_tracer_provider",
    "render_trace",
    "shutdown_provider",
    "trace_store_path",
]

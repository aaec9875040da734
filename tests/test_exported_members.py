"""The public names of each package are deliberate: listed, sorted, and all importable."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "outrig.middleware": [
        "Body",
        "Call",
        "CallError",
        "ErrorMapping",
        "Hop",
        "Middleware",
        "MiddlewareContext",
        "Next",
        "Pipeline",
        "PluginError",
        "Result",
        "Stream",
        "fold",
        "iterate",
    ],
    "outrig.middleware.testing": [
        "CapturedSpans",
        "PluginSidecar",
        "Recorder",
        "capture_spans",
        "configure",
        "make_call",
        "plugin_sidecar",
        "run",
    ],
    "outrig.middleware.ratelimit": [
        "DaprRateLimit",
        "Decision",
        "ERR_RATE_LIMITED",
        "ERR_RATE_LIMIT_UNAVAILABLE",
        "Limiter",
        "LocalLimits",
        "RateLimit",
        "TokenBucket",
    ],
    "outrig.middleware.resiliency": [
        "ATTR_RESEND_COUNT",
        "Backoff",
        "Breaker",
        "CircuitBreaker",
        "CircuitOpenError",
        "ConstantBackoff",
        "Counts",
        "DEFAULT_TRIP",
        "ERR_CIRCUIT_OPEN",
        "ERR_RESILIENCY_TIMEOUT",
        "ExponentialBackoff",
        "Listener",
        "Retry",
        "RetryBudget",
        "RetryPolicy",
        "State",
        "StatusCodes",
        "TRIP_VARIABLES",
        "Timeout",
        "Trip",
        "TripError",
        "compile_trip",
        "format_duration",
        "parse_duration",
    ],
    "outrig.telemetry": [
        "StoredSpan",
        "TraceStore",
        "TraceStoreExporter",
        "TracingSettings",
        "build_tracer_provider",
        "render_trace",
        "shutdown_provider",
        "trace_store_path",
    ],
    "outrig.runtime": ["ResourceError", "Resources", "Sidecar", "SidecarOptions", "load"],
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_all_is_exactly_the_public_api(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__all__ == sorted(module.__all__), "keep __all__ sorted"
    assert module.__all__ == PUBLIC[module_name], "a change to the public API must be deliberate"
    for name in module.__all__:
        assert getattr(module, name) is not None
    public_attrs = {n for n in vars(module) if not n.startswith("_")}
    leaked = (
        public_attrs
        - set(module.__all__)
        - {n for n in public_attrs if isinstance(getattr(module, n), type(module))}
    )
    assert not leaked, f"names reachable but not in __all__: {sorted(leaked)}"

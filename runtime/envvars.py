"""Environment variables outrig reads or sets, one constant each.

`OTEL_*` variables keep their standard OpenTelemetry meaning and are read by the SDK.
"""

OUTRIG_HOME = "OUTRIG_HOME"
"""Folder shared by all sidecars on a machine: name registry, local trace store.
Default `~/.outrig`."""

OUTRIG_TRACE_STORE = "OUTRIG_TRACE_STORE"
"""`1` to write spans to the local trace store even when an OTLP exporter is configured,
`0` to never write them there. Unset: the store is used when no exporter is configured."""

DAPR_HTTP_PORT = "DAPR_HTTP_PORT"
"""Set for the app: the sidecar's HTTP API port."""

DAPR_GRPC_PORT = "DAPR_GRPC_PORT"
"""Set for the app: the sidecar's gRPC API port."""

APP_ID = "APP_ID"
"""Set for the app: its own app id."""

APP_PORT = "APP_PORT"
"""Set for the app: the port the sidecar expects it to listen on."""

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

OUTRIG_CA_DIR = "OUTRIG_CA_DIR"
"""Folder of the CA a sidecar issues its own workload certificate from when
`spec.mtls.enabled` (`root.crt`, `issuer.crt`, `issuer.key`; see `outrig ca init`).
`--ca-dir` wins over it; without either, `$OUTRIG_HOME/ca` (created when missing)."""

NAMESPACE = "NAMESPACE"
"""The sidecar's namespace, in its SPIFFE ID `spiffe://<td>/ns/<namespace>/<app-id>` and
matched by access-control policies (Dapr's self-hosted variable). Default `default`."""

DAPR_API_TOKEN = "DAPR_API_TOKEN"
"""Read by the sidecar: when set, every Dapr API call (HTTP and gRPC) must carry it in the
`dapr-api-token` header/metadata, except the health endpoints. An app started by
`outrig run` inherits it, and the Dapr SDKs send it from there."""

APP_API_TOKEN = "APP_API_TOKEN"
"""Read by the sidecar: when set, sent to the app as `dapr-api-token` on every call into it
(invocations, pub/sub deliveries), so the app can tell its sidecar from anyone else."""

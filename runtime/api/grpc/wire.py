"""gRPC metadata <-> a Call's metadata, and the trace context gRPC clients send.

Incoming metadata becomes the call's metadata the way HTTP headers do (lower-case names,
text values); gRPC's own transport keys stay out. `grpc-trace-bin` (OpenCensus' binary
trace context) becomes a W3C `traceparent` when the client sent none, so the tracing layer
reads one format. (grpcio's core consumes `grpc-trace-bin` itself and, as of 1.85, does not
hand it to Python servers: clients that want their trace continued send `traceparent`,
as OpenTelemetry's gRPC instrumentation does.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from multidict import CIMultiDict

TRACE_BIN = "grpc-trace-bin"
API_TOKEN = "dapr-api-token"
_TRANSPORT = frozenset({"content-type", "te", "content-length", "host", "connection", "user-agent"})
"""Keys that belong to the gRPC/HTTP2 hop, never to the call."""


def incoming(metadata: Iterable[tuple[str, str | bytes]] | None) -> CIMultiDict[str]:
    """A call's metadata from what a gRPC client sent."""
    out: CIMultiDict[str] = CIMultiDict()
    trace_bin: bytes | None = None
    for key, value in metadata or ():
        if key.startswith(":") or key in _TRANSPORT or key.startswith("grpc-"):
            if key == TRACE_BIN and isinstance(value, bytes):
                trace_bin = value
            continue
        if isinstance(value, bytes):  # other `-bin` keys: binary, no text meaning to keep
            continue
        out.add(key, value)
    if trace_bin is not None and "traceparent" not in out:
        traceparent = traceparent_from_binary(trace_bin)
        if traceparent is not None:
            out["traceparent"] = traceparent
    return out


def traceparent_from_binary(data: bytes) -> str | None:
    """OpenCensus' binary format (version 0: field 0 trace id (16 bytes), field 1 span id
    (8), field 2 options (1)) as a W3C `traceparent`; None when malformed."""
    if len(data) < 27 or data[0] != 0 or data[1] != 0 or data[18] != 1:
        return None
    trace_id, span_id = data[2:18], data[19:27]
    flags = data[28] if len(data) >= 29 and data[27] == 2 else 0
    if not any(trace_id) or not any(span_id):
        return None
    return f"00-{trace_id.hex()}-{span_id.hex()}-{flags & 1:02x}"


def outgoing(metadata: Mapping[str, str], skip: Iterable[str] = ()) -> list[tuple[str, str | bytes]]:
    """gRPC metadata for a call sent on (to a gRPC app): the text values gRPC accepts."""
    dropped = {*_TRANSPORT, *skip}
    out: list[tuple[str, str | bytes]] = []
    for key, value in metadata.items():
        name = key.lower()
        if name in dropped or name.startswith(":") or name.startswith("grpc-") or name.endswith("-bin"):
            continue
        if value.isascii() and value.isprintable():
            out.append((name, value))
    return out


def text_map(metadata: Mapping[str, Any]) -> dict[str, str]:
    """A protobuf `map<string, string>` as a plain dict."""
    return {str(k): str(v) for k, v in metadata.items()}

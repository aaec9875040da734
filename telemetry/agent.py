"""The telemetry agent: a sidecar's child process that exports its spans.

Reads framed span rows from stdin (see `wire`), and hands them to the configured
exporters: the OpenTelemetry SDK's OTLP exporter (gRPC or HTTP, batched by the SDK's
`BatchSpanProcessor`) and/or the local trace store. It exits when the sidecar closes
the pipe (or dies), after a bounded final flush.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, BinaryIO

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from .tracestore import TraceStoreExporter, store_row
from .wire import HEADER_BYTES, row_to_span, unframe

log = logging.getLogger("outrig.telemetry.agent")

SUCCESS = SpanExportResult.SUCCESS
SHUTDOWN_MILLIS = 2000
"""The last OTLP flush's budget: within the sidecar's 3 s for the whole shutdown."""


def otlp_exporter(config: dict[str, Any]) -> SpanExporter | None:
    """The OTLP exporter from Dapr's `otel` settings, or from OTEL_* variables, or None."""
    otlp = config.get("otlp")
    if otlp is None:
        return None
    protocol, endpoint, secure = otlp.get("protocol"), otlp.get("endpoint"), otlp.get("secure", False)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        if endpoint is None:
            return Grpc()
        return Grpc(endpoint=endpoint.split("://", 1)[-1], insecure=not secure)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    if endpoint is None:
        return Http()
    if "://" not in endpoint:
        endpoint = f"{'https' if secure else 'http'}://{endpoint}"
    if not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return Http(endpoint=endpoint)


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def run(config: dict[str, Any], stream: BinaryIO) -> None:
    service = str(config["service"])
    resource = Resource.create({"service.name": service, "service.namespace": "outrig"})
    store = TraceStoreExporter(Path(config["store"])) if config.get("store") else None
    exporter = otlp_exporter(config)
    batch = BatchSpanProcessor(exporter) if exporter is not None else None
    try:
        while (header := _read_exact(stream, HEADER_BYTES)) is not None:
            payload = _read_exact(stream, int.from_bytes(header, "big"))
            if payload is None:
                break
            try:
                rows = unframe(payload)
                if (
                    store is not None
                    and store.write([store_row(row, service) for row in rows]) is not SUCCESS
                ):
                    log.warning("could not write %d spans to the local trace store", len(rows))
                if batch is not None:
                    for row in rows:
                        batch.on_end(row_to_span(row, resource))
            except Exception:
                log.exception("skipped a batch of spans that could not be exported")
    finally:
        if batch is not None:
            batch.force_flush(SHUTDOWN_MILLIS)
            batch.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        if store is not None:
            store.shutdown()


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s outrig-telemetry: %(message)s"
    )
    # The sidecar decides when we stop, by closing the pipe: a signal meant for it (a
    # SIGTERM to its group, a terminal's Ctrl-C) must not lose the last spans.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    run(json.loads(sys.argv[1]), sys.stdin.buffer)


if __name__ == "__main__":
    main()

"""`middleware.outrig.audit`: one JSON line per building-block call, for an audit trail.

Who called what (caller app id, verified SPIFFE identity when mTLS is on), on which
building block, how it ended, how long it took, and the trace to look it up in. Put it
in `spec.httpPipeline` to audit what apps and peers ask of this sidecar, and in
`spec.appHttpPipeline` to audit what reaches the app (invocations, pub/sub deliveries).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import IO, Any

from opentelemetry import trace

from outrig.middleware import Call, CallError, MiddlewareContext, Next, Result

__all__ = ["Audit"]

log = logging.getLogger("outrig.audit")

REDACTED = "[redacted]"


def _names(text: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in text.split(",") if part.strip())


class Audit:
    own_time_limit = 1.0
    """An audit line is a small buffered write: a plugin this slow is broken."""

    @dataclass(frozen=True)
    class Config:
        path: str = ""
        """A file to append JSON lines to; empty: the `outrig.audit` logger."""
        blocks: str = ""
        """Comma-separated building blocks to audit (`invoke,state`); empty: all."""
        headers: str = ""
        """Comma-separated request headers to record with each line."""
        redact: str = "authorization,cookie,dapr-api-token"
        """Headers whose values are never written, even when listed in `headers`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.blocks = _names(config.blocks)
        self.headers = sorted(_names(config.headers))
        self.redact = _names(config.redact)
        self.app_id = ""
        self._file: IO[str] | None = None

    async def start(self, context: MiddlewareContext) -> None:
        self.app_id = context.app_id
        if self.config.path:
            # Opened once, at start; each line is one small buffered write.
            self._file = open(self.config.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115, ASYNC230

    async def stop(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    async def __call__(self, call: Call, call_next: Next) -> Result:
        if self.blocks and call.block not in self.blocks:
            return await call_next(call)
        started = time.perf_counter()
        status, error = 500, "exception"
        try:
            result = await call_next(call)
            status = result.status
            error = result.error.code if result.error else ""
            return result
        except CallError as failure:
            status, error = failure.status, failure.code
            raise
        finally:
            self._write(call, status, error, time.perf_counter() - started)

    def _write(self, call: Call, status: int, error: str, seconds: float) -> None:
        span = trace.get_current_span()
        context = span.get_span_context()
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
            "app": self.app_id,
            "block": call.block,
            "operation": call.operation,
            "target": call.target,
            "subject": call.subject,
            "hop": str(call.hop),
            "verb": call.verb,
            "caller": call.caller,
            "identity": call.identity,
            "status": status,
            "error": error,
            "ms": round(seconds * 1000, 3),
            "trace_id": f"{context.trace_id:032x}" if context.is_valid else "",
        }
        if self.headers:
            line["headers"] = {
                name: REDACTED if name in self.redact else call.metadata.get(name)
                for name in self.headers
                if name in call.metadata
            }
        text = json.dumps(line, separators=(",", ":"))
        if self._file is not None:
            self._file.write(text + "\n")
        else:
            log.info("%s", text)
        span.set_attribute("outrig.audit.recorded", True)

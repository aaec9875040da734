"""Logs that name their trace: every record carries the `trace_id` and `span_id` of the
span current when it was logged, in text or, with `--log-as-json`, as Dapr's JSON lines.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from opentelemetry import trace


class TraceContext(logging.Filter):
    """Adds `trace_id` and `span_id` (empty outside a span) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = f"{context.trace_id:032x}"
            record.span_id = f"{context.span_id:016x}"
        else:
            record.trace_id = record.span_id = ""
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, app_id: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s [{app_id}] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        trace_id = getattr(record, "trace_id", "")
        return f"{text} trace_id={trace_id} span_id={getattr(record, 'span_id', '')}" if trace_id else text


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with Dapr's field names (`time`, `level`, `msg`, `scope`,
    `app_id`, `type`) plus `trace_id` and `span_id`."""

    def __init__(self, app_id: str) -> None:
        super().__init__()
        self.app_id = app_id

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower().replace("warning", "warn"),
            "type": "log",
            "scope": record.name,
            "app_id": self.app_id,
            "msg": record.getMessage(),
            "trace_id": getattr(record, "trace_id", ""),
            "span_id": getattr(record, "span_id", ""),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(app_id: str, level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TraceContext())
    handler.setFormatter(JsonFormatter(app_id) if as_json else TextFormatter(app_id))
    logging.basicConfig(level=level, handlers=[handler], force=True)

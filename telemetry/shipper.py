"""The sidecar's side of span export: rows shipped to a telemetry agent process.

On CPython any exporter thread inside the sidecar (a `BatchSpanProcessor` encoding OTLP,
or writing SQLite) convoys the GIL against the event loop: every socket call of the loop
then waits on it. Measured with benchmarks/invoke.py at 1,000 req/s, exporting in-process
took p50/p99 from about 1.1/2 ms to 9/55 ms. So the sidecar only turns each ended span
into a tuple (a few microseconds, on the thread that ended it) and writes small batches
to a pipe; the agent (`outrig.telemetry.agent`, a child process) encodes and exports.

Bounded and never blocking: the pipe is non-blocking, unsent bytes are capped, and past
the cap spans are dropped and counted, so a stuck agent or collector can never stall a
request or grow memory. If the agent dies, spans are dropped with one warning.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .wire import Row, frame, span_to_row

log = logging.getLogger("outrig.telemetry")

MAX_PENDING_BYTES = 8 << 20


class SpanShipper(SpanProcessor):
    def __init__(self, agent_config: dict[str, Any], *, batch: int = 64, delay: float | None = None) -> None:
        self.batch = batch
        env_delay = os.environ.get("OTEL_BSP_SCHEDULE_DELAY")
        self.delay = delay if delay is not None else min(0.05, float(env_delay or 50) / 1000)
        self.dropped = 0
        self._rows: list[Row] = []
        self._pending = b""
        self._lock = threading.Lock()
        self._last_send = time.monotonic()
        self._broken = False
        self._agent = subprocess.Popen(
            [sys.executable, "-m", "outrig.telemetry.agent", json.dumps(agent_config)],
            stdin=subprocess.PIPE,
        )
        assert self._agent.stdin is not None
        self._fd = self._agent.stdin.fileno()
        os.set_blocking(self._fd, False)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._send_when_idle, name="outrig-span-shipper", daemon=True)
        self._thread.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self._broken or not span.context or not span.context.trace_flags.sampled:
            return
        row = span_to_row(span)
        with self._lock:
            self._rows.append(row)
            if len(self._rows) >= self.batch or time.monotonic() - self._last_send >= self.delay:
                self._send_locked()

    def _send_locked(self) -> None:
        self._last_send = time.monotonic()
        if self._rows:
            if len(self._pending) < MAX_PENDING_BYTES:
                self._pending += frame(self._rows)
            else:
                self.dropped += len(self._rows)
            self._rows = []
        if not self._pending or self._broken:
            return
        try:
            written = os.write(self._fd, self._pending)
        except BlockingIOError:
            return
        except (BrokenPipeError, OSError) as exc:
            self._broken = True
            self._pending = b""
            log.warning("telemetry agent is gone (%s); spans are no longer exported", exc)
            return
        self._pending = self._pending[written:]

    def _send_when_idle(self) -> None:
        while not self._stopping.wait(self.delay):
            with self._lock:
                if (self._rows or self._pending) and time.monotonic() - self._last_send >= self.delay:
                    self._send_locked()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        while time.monotonic() < deadline:
            with self._lock:
                self._send_locked()
                if not self._pending or self._broken:
                    return not self._broken
            time.sleep(0.005)
        return False

    def shutdown(self, timeout: float = 3.0) -> None:
        """Send what is left, let the agent export it, and stop it within `timeout`."""
        self._stopping.set()
        self._thread.join(1)
        self.force_flush(int(timeout * 500))
        if self.dropped:
            log.warning("dropped %d spans: the telemetry agent could not keep up", self.dropped)
        try:
            assert self._agent.stdin is not None
            self._agent.stdin.close()
        except OSError:
            pass
        try:
            self._agent.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("telemetry agent did not finish exporting within %.1fs; stopping it", timeout)
            self._agent.kill()
            self._agent.wait()

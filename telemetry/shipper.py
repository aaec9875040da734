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

import contextlib
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
MIN_DELAY = 0.005
SHUTDOWN_SECONDS = 3.0


class SpanShipper(SpanProcessor):
    def __init__(self, agent_config: dict[str, Any], *, batch: int = 64, delay: float | None = None) -> None:
        self.batch = batch
        env_delay = os.environ.get("OTEL_BSP_SCHEDULE_DELAY")
        wanted = delay if delay is not None else min(0.05, float(env_delay or 50) / 1000)
        self.delay = max(MIN_DELAY, wanted)
        self.dropped = 0
        self._rows: list[Row] = []
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._last_send = time.monotonic()
        self._broken = False
        # Its own session: a terminal's Ctrl-C must not kill it before it has the last
        # spans; it exits when this pipe closes (at our exit, or our death).
        self._agent = subprocess.Popen(
            [sys.executable, "-m", "outrig.telemetry.agent", json.dumps(agent_config)],
            stdin=subprocess.PIPE,
            start_new_session=True,
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
        except OSError as exc:
            self._broken = True
            self._pending.clear()
            log.warning("telemetry agent is gone (%s); spans are no longer exported", exc)
            return
        del self._pending[:written]

    def _send_when_idle(self) -> None:
        while not self._stopping.wait(self.delay):
            with self._lock:
                if (self._rows or self._pending) and time.monotonic() - self._last_send >= self.delay:
                    self._send_locked()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        while True:
            with self._lock:
                self._send_locked()
                if not self._pending or self._broken:
                    return not self._broken
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def shutdown(self) -> None:
        """Send what is left and let the agent export it, all within SHUTDOWN_SECONDS."""
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        self._stopping.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self.force_flush(int(max(0.0, deadline - time.monotonic()) * 500))
        with self._lock:
            unsent = len(self._rows)
            if self._pending:
                log.warning("%d bytes of spans were still unsent at exit", len(self._pending))
            self.dropped += unsent
        if self.dropped:
            log.warning("dropped %d spans: the telemetry agent could not keep up", self.dropped)
        with contextlib.suppress(OSError):
            assert self._agent.stdin is not None
            self._agent.stdin.close()
        try:
            self._agent.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning(
                "telemetry agent did not finish exporting within %.0fs; stopping it", SHUTDOWN_SECONDS
            )
            self._agent.kill()
            self._agent.wait()

"""The test kit's parts; `outrig.middleware.testing` is their public face."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from multidict import CIMultiDict
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracer, SpanKind, Tracer

from ._call import Body, Call, Hop, Middleware, Result
from ._guard import DEFAULT_OWN_TIME_LIMIT, Guarded
from ._lifecycle import MiddlewareContext, Startable, Stoppable
from ._pipeline import ErrorMapping, Pipeline
from ._testing_sidecar import PluginSidecar
from .plugins import config_type_of, validate_config


def make_call(
    block: str = "invoke",
    operation: str = "invoke",
    target: str = "app",
    subject: str = "method",
    *,
    hop: Hop = Hop.APP_API,
    route: str | None = None,
    headers: Mapping[str, str] | None = None,
    body: Body = b"",
    verb: str = "POST",
    caller: str | None = None,
    identity: str | None = None,
    request: Any = None,
) -> Call:
    """A `Call` as an adapter would build it; by default an app's invoke of `app/method`."""
    return Call(
        block=block,
        operation=operation,
        target=target,
        subject=subject,
        hop=hop,
        route=route or f"/v1.0/{block}/{{target}}/{operation}",
        metadata=CIMultiDict(headers or {}),
        body=body,
        verb=verb,
        caller=caller,
        identity=identity,
        request=request,
    )


Answer = Result | Callable[[Call], Result | Awaitable[Result]]


class Recorder:
    """The rest of the chain, faked: keeps every call that reaches it and answers `answer`
    (a `Result`, or a function of the call; by default an empty 200)."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer
        self.calls: list[Call] = []

    async def __call__(self, call: Call) -> Result:
        self.calls.append(call)
        if self.answer is None:
            return Result()
        if isinstance(self.answer, Result):
            return self.answer
        produced = self.answer(call)
        return await produced if inspect.isawaitable(produced) else produced


def configure(plugin: type, metadata: Mapping[str, Any], type_name: str | None = None) -> Middleware:
    """Build `plugin` from metadata as a Component's `spec.metadata` gives it (strings
    included), validated against its `Config` the way the sidecar does: a bad value raises
    `PluginError` naming the field and the value."""
    name = type_name or plugin.__name__
    built: Middleware = plugin(validate_config(name, config_type_of(name, plugin), metadata))
    return built


async def run(
    middleware: Middleware | Sequence[Middleware],
    call: Call | None = None,
    rest: Callable[[Call], Awaitable[Result]] | None = None,
    *,
    tracer: Tracer | None = None,
    own_time_limit: float | None = DEFAULT_OWN_TIME_LIMIT,
    app_id: str = "plugin-test",
) -> Result:
    """Run one call through `middleware` as the sidecar would: started with a context,
    guarded, after error mapping, inside a server span of `tracer` (e.g. from
    `capture_spans`), then stopped. A failure comes back as a `Result` with `error` set."""
    links = [middleware] if not isinstance(middleware, Sequence) else list(middleware)
    call = call or make_call()
    tracer = tracer or NoOpTracer()
    guarded = [
        Guarded(f"plugin-{i}", type(link).__name__, link, getattr(link, "own_time_limit", own_time_limit))
        for i, link in enumerate(links)
    ]
    for link in links:
        if isinstance(link, Startable):
            await link.start(MiddlewareContext(app_id, type(link).__name__, tracer=tracer))
    try:
        pipeline = Pipeline([ErrorMapping(), *guarded], rest or Recorder())
        with tracer.start_as_current_span(f"{call.verb} {call.route}", kind=SpanKind.SERVER):
            return await pipeline(call)
    finally:
        for link in links:
            if isinstance(link, Stoppable):
                await link.stop()


class CapturedSpans:
    """Spans finished under `tracer`, kept in memory."""

    def __init__(self) -> None:
        self._exporter = InMemorySpanExporter()
        self._provider = TracerProvider()
        self._provider.add_span_processor(SimpleSpanProcessor(self._exporter))
        self.tracer: Tracer = self._provider.get_tracer("outrig.middleware.testing")

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self._exporter.get_finished_spans())

    def attributes(self) -> dict[str, Any]:
        """The attributes of every span, merged (later spans win): handy with one span."""
        merged: dict[str, Any] = {}
        for span in self.spans:
            merged.update(span.attributes or {})
        return merged

    def events(self) -> list[str]:
        return [event.name for span in self.spans for event in span.events]

    def close(self) -> None:
        self._provider.shutdown()


@contextmanager
def capture_spans() -> Iterator[CapturedSpans]:
    """Spans in memory: pass `.tracer` to `run`, read `.spans` afterwards."""
    captured = CapturedSpans()
    try:
        yield captured
    finally:
        captured.close()


@pytest.fixture
def plugin_sidecar() -> Iterator[Callable[..., PluginSidecar]]:
    """A factory of started `PluginSidecar`s, all stopped after the test:
    `plugin_sidecar("middleware.http.mine", {"setting": "1"}, plugin=Mine)`.
    Import it into your conftest.py to use it."""
    started: list[PluginSidecar] = []

    def start(type_name: str, metadata: Mapping[str, Any] | None = None, **options: Any) -> PluginSidecar:
        sidecar = PluginSidecar(type_name, metadata, **options)
        started.append(sidecar)
        return sidecar.start()

    try:
        yield start
    finally:
        for sidecar in started:
            sidecar.close()

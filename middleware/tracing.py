"""Tracing as middleware: a SERVER span per inbound hop, a CLIENT span per outbound hop.

W3C `traceparent`/`tracestate`/`baggage` (or whatever `OTEL_PROPAGATORS` names) are
extracted from the call's metadata on the way in and injected on the way out, so the app
behind the callee's sidecar continues the caller's trace. Span names and attributes
follow the OpenTelemetry HTTP semantic conventions; `call.attributes` (set by adapters
and middleware) are recorded on the span as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from ._call import Call, Hop, Next, Result, Stream
from ._errors import CallError

ATTR_OPERATION = "outrig.operation"
"""The building block and operation: `invoke`, later `state.get`, `pubsub.publish`..."""
ATTR_TARGET = "outrig.target"
"""The app id or component name the call is for."""
ATTR_HOP = "outrig.hop"
ATTR_DAPR_NAME = "outrig.dapr.span_name"
"""The name Dapr gives the same span (e.g. `CallLocal/{appId}/{method}`), for searching."""


_MESSAGING_KINDS = {
    "send": SpanKind.PRODUCER,
    "create": SpanKind.PRODUCER,
    "receive": SpanKind.CONSUMER,
    "process": SpanKind.CONSUMER,
}


def _messaging(call: Call) -> tuple[str, SpanKind] | None:
    """Name and kind of a messaging span (`send orders`, `process orders`), per the
    OpenTelemetry messaging conventions; None for other calls."""
    operation_type = call.attributes.get("messaging.operation.type")
    if operation_type is None:
        return None
    name = call.attributes.get("messaging.operation.name", operation_type)
    return f"{name} {call.subject}", _MESSAGING_KINDS.get(operation_type, SpanKind.INTERNAL)


def _link(carrier: Mapping[str, str]) -> Link | None:
    context = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    return Link(context) if context.is_valid else None


def _operation(call: Call) -> str:
    return call.block if call.operation == call.block else f"{call.block}.{call.operation}"


def _dapr_name(call: Call) -> str:
    if call.block == "invoke":
        return f"CallLocal/{call.target}/{call.subject}"
    return f"{call.block}/{call.operation}/{call.target}"


class _Tracing:
    kind: SpanKind

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def _start(
        self, call: Call, name: str, parent: otel_context.Context | None, kind: SpanKind | None = None
    ) -> Span:
        # Every attribute costs a few microseconds of validation in the SDK, per span:
        # the set is kept to what a reader of the trace needs (see README, Traces).
        attributes = call.attributes
        attributes[ATTR_OPERATION] = _operation(call)
        attributes[ATTR_TARGET] = call.target
        attributes[ATTR_HOP] = call.hop.value
        attributes[ATTR_DAPR_NAME] = _dapr_name(call)
        if call.hop is not Hop.COMPONENT:
            attributes["http.request.method"] = call.verb
        links = [link for carrier in call.links if (link := _link(carrier)) is not None]
        return self.tracer.start_span(
            name, context=parent, kind=kind or self.kind, attributes=attributes, links=links
        )

    def _is_error(self, status: int) -> bool:
        raise NotImplementedError

    async def _run(
        self, span: Span, base: otel_context.Context | None, call: Call, call_next: Next
    ) -> Result:
        token = otel_context.attach(trace.set_span_in_context(span, base))
        try:
            result = await call_next(call)
        except CallError as error:
            _finish_error(span, error.code, error.message, error.status, _status_key(call))
            raise
        except BaseException as exc:
            span.record_exception(exc)
            _finish_error(span, type(exc).__qualname__, str(exc), None, _status_key(call))
            raise
        finally:
            otel_context.detach(token)
        span.set_attribute(_status_key(call), result.status)
        if result.error is not None:
            span.set_attribute("outrig.error.code", result.error.code)
        if self._is_error(result.status):
            span.set_attribute("error.type", result.error.code if result.error else str(result.status))
            span.set_status(Status(StatusCode.ERROR))
        if isinstance(result.body, bytes):
            span.end()
        else:
            result.body = Stream(_end_after(span, result.body), result.body.length)
        return result


def _status_key(call: Call) -> str:
    """Calls to components are not HTTP: their status is outrig's, not `http.response.*`."""
    return "outrig.status" if call.hop is Hop.COMPONENT else "http.response.status_code"


def _finish_error(span: Span, code: str, message: str, status: int | None, key: str) -> None:
    if status is not None:
        span.set_attribute(key, status)
    span.set_attribute("error.type", code)
    span.set_status(Status(StatusCode.ERROR, message))
    span.end()


async def _end_after(span: Span, body: Stream) -> AsyncIterator[bytes]:
    """End the span when a streamed body has been sent (or abandoned), so its duration
    covers the body; closing this generator closes the upstream stream too."""
    try:
        async for chunk in body:
            yield chunk
    finally:
        span.end()
        await body.aclose()


class ServerTracing(_Tracing):
    """Continues the caller's trace (or starts one) with a SERVER span named `{verb} {route}`
    (a CONSUMER span `process {topic}` for a pub/sub delivery).

    The extracted context (with its baggage) becomes current for the rest of the chain.
    """

    kind = SpanKind.SERVER

    def _is_error(self, status: int) -> bool:
        return status >= 500

    async def __call__(self, call: Call, call_next: Next) -> Result:
        parent = propagate.extract(call.metadata)
        name, kind = _messaging(call) or (f"{call.verb} {call.route}", None)
        span = self._start(call, name, parent, kind)
        return await self._run(span, parent, call, call_next)


class ClientTracing(_Tracing):
    """A CLIENT span for an outbound hop, whose context is injected into the call's metadata.

    The span is named `{verb} {url.template}` when the route is a template, else `{verb}`;
    a call to a component is named `{db.operation.name} {store}` (database conventions),
    a publish is a PRODUCER span `send {topic}` (messaging conventions).
    """

    kind = SpanKind.CLIENT

    def _is_error(self, status: int) -> bool:
        return status >= 400

    async def __call__(self, call: Call, call_next: Next) -> Result:
        messaging = _messaging(call)
        kind: SpanKind | None = None
        if messaging is not None:
            name, kind = messaging
        elif call.hop is Hop.COMPONENT:
            name = f"{call.attributes.get('db.operation.name', call.operation)} {call.target}"
        else:
            name = f"{call.verb} {call.route}" if call.route else call.verb
        span = self._start(call, name, None, kind)
        propagate.inject(call.metadata, context=trace.set_span_in_context(span))
        return await self._run(span, None, call, call_next)

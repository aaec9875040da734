"""Output bindings: Dapr's `POST /v1.0/bindings/{name}` over binding components.

The block finds the binding and checks the operation is one it supports (both 500
`ERR_INVOKE_OUTPUT_BINDING`, as Dapr), then runs the operation as a call of its own
through the binding's component pipeline (metrics, resiliency, a CLIENT span named
`{operation} {binding}`). The trace context of that span goes along in the request
metadata (`traceparent`, `tracestate`), as Dapr passes it, so `bindings.http` continues
the trace at the server it calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from outrig.middleware import Call, CallError, Hop, Pipeline, Result

from ..components.bindings import BindingError, BindingRequest, BindingResponse, OutputBinding
from .requests import request_of

TRACE_KEYS = ("traceparent", "tracestate")
ERROR_CODE = "ERR_INVOKE_OUTPUT_BINDING"


@dataclass(frozen=True)
class OutputRequest:
    operation: str
    data: bytes = b""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass
class BindingEntry:
    name: str
    type: str
    binding: OutputBinding
    pipeline: Pipeline


class BindingsBlock:
    """The endpoint of inbound pipelines for `bindings` calls."""

    def __init__(self, outputs: Mapping[str, BindingEntry]) -> None:
        self.outputs = outputs

    async def __call__(self, call: Call) -> Result:
        entry = self.outputs.get(call.target)
        if entry is None:
            names = ", ".join(sorted(self.outputs)) or "none"
            raise CallError(
                ERROR_CODE, f"couldn't find output binding {call.target} (output bindings: {names})", 500
            )
        request = await request_of(call)
        if not isinstance(request, OutputRequest):
            raise CallError(
                "ERR_MALFORMED_REQUEST", f"unknown bindings request {type(request).__name__}", 400
            )
        if request.operation not in entry.binding.operations:
            raise CallError(
                ERROR_CODE,
                f"binding {entry.name} does not support operation {request.operation}. "
                f"supported operations: {', '.join(entry.binding.operations)}",
                500,
            )
        outbound = Call(
            block="bindings", operation=request.operation, target=entry.name, subject="", hop=Hop.COMPONENT,
            route="", metadata=call.metadata, request=request,
            attributes={**entry.binding.span_attributes, "outrig.binding.type": entry.type},
        )  # fmt: skip
        result = await entry.pipeline(outbound)
        return Result(result.status, value=result.value)


class OutputEndpoint:
    """The end of a binding's component pipeline: one operation, errors as Dapr's."""

    def __init__(self, binding: OutputBinding) -> None:
        self.binding = binding

    async def __call__(self, call: Call) -> Result:
        request: OutputRequest = call.request
        metadata = dict(request.metadata)
        for key in TRACE_KEYS:
            if key in call.metadata and key not in metadata:
                metadata[key] = call.metadata[key]
        try:
            response: BindingResponse = await self.binding.invoke(
                BindingRequest(request.operation, request.data, metadata)
            )
        except BindingError as exc:
            raise CallError(
                ERROR_CODE, f"error invoking output binding {call.target}: {exc}", exc.status
            ) from None
        return Result(200 if response.data else 204, value=response)

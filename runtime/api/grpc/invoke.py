"""Dapr's InvokeService: the same invoke Call as `/v1.0/invoke/{appId}/method/{method}`.

The request's `http_extension` gives the verb and query string the callee's app sees (POST
when none, as Dapr does for HTTP apps); gRPC metadata travels as headers, the payload as
the body with `content_type` as its Content-Type. The callee's response headers come back
as gRPC header metadata, with `dapr-http-status`. A non-2xx answer of an HTTP app becomes
Dapr's `ErrorFromHTTPResponseCode` error: the code from `CodeFromHTTPStatus` (400 is
INTERNAL, 500 UNKNOWN), the status text as message and `ErrorInfo.reason`. (Sidecars talk
HTTP to each other, so a gRPC app's code crosses that hop as an HTTP status in an error
body from the callee's sidecar, which keeps its code: the codes that map one-to-one survive,
UNKNOWN arrives as INTERNAL.)
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import invoke_pb2
from google.protobuf import any_pb2
from multidict import CIMultiDict

from outrig.middleware import CallError

from ...blocks.invoke import IDENTITY_HEADERS, INVOKE_ROUTE
from .calls import Context, Pipeline, rpc_call, run
from .errors import abort
from .wire import incoming, outgoing

HTTP_STATUS_HEADER = "dapr-http-status"
"""The callee's HTTP status, sent as gRPC header metadata (Dapr's `daprHTTPStatusHeader`)."""
DETAIL_LIMIT = 63
"""Dapr truncates `http.error_message` to 63 characters (`maxMetadataValueLen`)."""
_HEADER_SKIP = ("date", "server", "transfer-encoding", "keep-alive", "trailer", "upgrade", "content-type")
_VERB_NUMBERS = frozenset(common_pb2.HTTPExtension.Verb.values())

CODES_FROM_HTTP: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INTERNAL,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.CANCELLED,
    409: grpc.StatusCode.ALREADY_EXISTS,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.UNKNOWN,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
"""Dapr's `CodeFromHTTPStatus` (pkg/messaging/v1, after grpc's http-grpc-status-mapping):
a callee's HTTP answer as a gRPC code; any other non-2xx status is UNKNOWN."""


def verb_of(extension: common_pb2.HTTPExtension) -> str:
    """The verb the callee sees: POST for `NONE`; a number that is no verb is a bad request."""
    if extension.verb not in _VERB_NUMBERS:
        message = f"InvokeService: http_extension.verb {extension.verb} is not one of Dapr's HTTP verbs"
        raise CallError(
            "ERR_MALFORMED_REQUEST", message, 400, field_violations=[("message.http_extension.verb", message)]
        )
    name = common_pb2.HTTPExtension.Verb.Name(extension.verb)
    return "POST" if name == "NONE" else name


def failure(status: int, body: bytes) -> CallError:
    """A callee's non-2xx answer as Dapr's `ErrorFromHTTPResponseCode`: the code from
    `CODES_FROM_HTTP`, the status text as message and `ErrorInfo.reason`, the status and
    (the start of) the body in `ErrorInfo.metadata`. An error body from the callee's
    sidecar (`errorCode` and `message`: the app was not reached) keeps its code and text."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if (
        isinstance(doc, dict)
        and isinstance(doc.get("errorCode"), str)
        and isinstance(doc.get("message"), str)
    ):
        return CallError(doc["errorCode"], doc["message"], status)
    try:
        text = HTTPStatus(status).phrase
    except ValueError:
        text = ""
    return CallError(
        "ERR_DIRECT_INVOKE",
        text,
        status,
        grpc_code=CODES_FROM_HTTP.get(status, grpc.StatusCode.UNKNOWN).name,
        reason=text,
        metadata={
            "http.code": str(status),
            "http.error_message": body.decode("utf-8", "replace")[:DETAIL_LIMIT],
        },
    )


def response_headers(headers: CIMultiDict[str], status: int) -> list[tuple[str, str | bytes]]:
    """The callee's response headers as gRPC header metadata, with `dapr-http-status`."""
    metadata = outgoing(headers, skip=(*_HEADER_SKIP, HTTP_STATUS_HEADER))
    metadata.append((HTTP_STATUS_HEADER, str(status)))
    return metadata


class InvokeRpcs:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def rpcs(self) -> dict[str, Any]:
        return {"InvokeService": self.invoke_service}

    async def invoke_service(
        self, request: invoke_pb2.InvokeServiceRequest, context: Context
    ) -> common_pb2.InvokeResponse:
        message = request.message
        if not request.id:
            raise CallError("ERR_DIRECT_INVOKE", "InvokeService: id (the target app id) is empty", 400)
        metadata = incoming(context.invocation_metadata())
        for header in IDENTITY_HEADERS:
            metadata.popall(header, None)
        if message.content_type:
            metadata["content-type"] = message.content_type
        call = rpc_call(
            context, "InvokeService", block="invoke", operation="invoke", target=request.id,
            subject=message.method, route=INVOKE_ROUTE, verb=verb_of(message.http_extension),
            body=message.data.value, metadata=metadata,
        )  # fmt: skip
        call.query = message.http_extension.querystring
        result = await run(self.pipeline, call, context)
        body = await result.read()
        await context.send_initial_metadata(response_headers(result.headers, result.status))
        if not 200 <= result.status < 300:
            await abort(context, failure(result.status, body))
        content_type = result.headers.get("content-type", "")
        return common_pb2.InvokeResponse(data=any_pb2.Any(value=body), content_type=content_type)

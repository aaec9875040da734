"""CallError -> gRPC status, with Dapr's richer error details in the status.

The status code is the one Dapr gives the error: named where it is raised (`grpc_code=`),
else Dapr's for its error code (`BY_CODE`), else mapped from its HTTP status; the details
(`ErrorInfo` with Dapr's reason code and domain `dapr.io`, `ResourceInfo`, `BadRequest`)
travel as a serialized `google.rpc.Status` in the `grpc-status-details-bin` trailer, where
`grpc_status.rpc_status.from_call` and the Dapr SDKs' `DaprGrpcError` read them.
"""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]  # .pyi, no py.typed

from outrig.middleware import CallError

STATUS_DETAILS_KEY = "grpc-status-details-bin"

GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ABORTED,
    412: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
HTTP_STATUSES: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
"""The reverse, as grpc-gateway maps them: for gRPC answers passed on over HTTP."""


_INVALID = grpc.StatusCode.INVALID_ARGUMENT
_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
BY_CODE: dict[str, grpc.StatusCode] = {
    "ERR_STATE_STORE_NOT_FOUND": _INVALID,
    "ERR_STATE_STORE_NOT_CONFIGURED": _PRECONDITION,
    "ERR_PUBSUB_NOT_FOUND": _INVALID,
    "ERR_PUBSUB_EMPTY": _INVALID,
    "ERR_TOPIC_EMPTY": _INVALID,
    "ERR_PUBSUB_NOT_CONFIGURED": _PRECONDITION,
    "ERR_PUBSUB_CLOUD_EVENTS_SER": _INVALID,
    "ERR_PUBSUB_EVENTS_SER": _INVALID,
    "ERR_PUBSUB_REQUEST_METADATA": _INVALID,
    "ERR_SECRET_STORE_NOT_FOUND": _INVALID,
    "ERR_SECRET_STORES_NOT_CONFIGURED": _PRECONDITION,
    "ERR_LOCK_STORE_NOT_FOUND": _INVALID,
    "ERR_LOCK_STORE_NOT_CONFIGURED": _PRECONDITION,
    "ERR_CONFIGURATION_STORE_NOT_FOUND": _INVALID,
    "ERR_CONFIGURATION_STORE_NOT_CONFIGURED": _PRECONDITION,
}
"""Dapr's gRPC code for each error code whose HTTP status says something else on gRPC
(dapr/dapr `pkg/api/errors`): an unknown pubsub is HTTP 404 but INVALID_ARGUMENT, an unknown
secret store HTTP 401 but INVALID_ARGUMENT (the caller is not unauthenticated), "not
configured" is FAILED_PRECONDITION whatever its HTTP status. A code Dapr answers with
several gRPC codes (`ERR_STATE_STORE_NOT_SUPPORTED`: INTERNAL for queries, UNIMPLEMENTED for
transactions) passes `grpc_code=` where it is raised."""


def grpc_code(error: CallError) -> grpc.StatusCode:
    named = error.details.get("grpc_code")
    if isinstance(named, str) and named in grpc.StatusCode.__members__:
        return grpc.StatusCode[named]
    if error.code in BY_CODE:
        return BY_CODE[error.code]
    return GRPC_CODES.get(error.status, grpc.StatusCode.UNKNOWN)


def status_proto(error: CallError) -> status_pb2.Status:
    """The `google.rpc.Status` for an error: code, message, Dapr's rich details."""
    status = status_pb2.Status(code=grpc_code(error).value[0], message=error.message)
    for detail in error.rich_details():
        kind = detail["@type"].rsplit(".", 1)[-1]
        packed = any_pb2.Any()
        if kind == "ErrorInfo":
            packed.Pack(
                error_details_pb2.ErrorInfo(
                    reason=detail["reason"], domain=detail["domain"], metadata=detail.get("metadata", {})
                )
            )
        elif kind == "ResourceInfo":
            packed.Pack(
                error_details_pb2.ResourceInfo(
                    resource_type=detail["resource_type"],
                    resource_name=detail["resource_name"],
                    owner=detail["owner"],
                    description=detail["description"],
                )
            )
        elif kind == "BadRequest":
            violations = [
                error_details_pb2.BadRequest.FieldViolation(field=v["field"], description=v["description"])
                for v in detail["field_violations"]
            ]
            packed.Pack(error_details_pb2.BadRequest(field_violations=violations))
        else:
            continue
        status.details.append(packed)
    return status


async def abort(context: grpc.aio.ServicerContext[object, object], error: CallError) -> NoReturn:
    """End the RPC with the error's status; rich details go in the trailer."""
    status = status_proto(error)
    trailer: tuple[tuple[str, str | bytes], ...] = ()
    if status.details:
        trailer = ((STATUS_DETAILS_KEY, status.SerializeToString()),)
    await context.abort(grpc_code(error), error.message, trailer)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

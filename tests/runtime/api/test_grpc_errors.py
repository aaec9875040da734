"""Errors rendered for both APIs: gRPC status with rich details, and the HTTP body."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from outrig.middleware import CallError
from outrig.runtime.api.grpc import GRPC_CODES, HTTP_STATUSES, grpc_code, status_proto
from outrig.runtime.api.grpc.invoke import failure
from outrig.runtime.api.grpc.pubsub import partial_failure
from outrig.runtime.blocks.pubsub import Failure


def test_http_statuses_map_to_daprs_grpc_codes() -> None:
    expected = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ABORTED", 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}  # fmt: skip
    assert {status: grpc_code(CallError("E", "m", status)).name for status in expected} == expected
    assert grpc_code(CallError("E", "m", 418)) is grpc.StatusCode.UNKNOWN
    assert grpc_code(CallError("E", "m", 500, grpc_code="UNAVAILABLE")) is grpc.StatusCode.UNAVAILABLE
    for code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE):
        assert GRPC_CODES[HTTP_STATUSES[code]] is code, "these survive a hop over HTTP"


# (Dapr error code, the HTTP status outrig raises it with, Dapr's gRPC code): dapr/dapr pkg/api/errors.
DAPR_CODES = [
    ("ERR_PUBSUB_NOT_FOUND", 404, "INVALID_ARGUMENT"),
    ("ERR_PUBSUB_EMPTY", 404, "INVALID_ARGUMENT"),
    ("ERR_TOPIC_EMPTY", 404, "INVALID_ARGUMENT"),
    ("ERR_PUBSUB_NOT_CONFIGURED", 400, "FAILED_PRECONDITION"),
    ("ERR_PUBSUB_CLOUD_EVENTS_SER", 400, "INVALID_ARGUMENT"),
    ("ERR_PUBSUB_EVENTS_SER", 400, "INVALID_ARGUMENT"),
    ("ERR_PUBSUB_REQUEST_METADATA", 400, "INVALID_ARGUMENT"),
    ("ERR_PUBSUB_PUBLISH_MESSAGE", 500, "INTERNAL"),
    ("ERR_STATE_STORE_NOT_FOUND", 400, "INVALID_ARGUMENT"),
    ("ERR_STATE_STORE_NOT_CONFIGURED", 500, "FAILED_PRECONDITION"),
    ("ERR_SECRET_STORE_NOT_FOUND", 401, "INVALID_ARGUMENT"),
    ("ERR_SECRET_STORES_NOT_CONFIGURED", 500, "FAILED_PRECONDITION"),
    ("ERR_LOCK_STORE_NOT_FOUND", 400, "INVALID_ARGUMENT"),
    ("ERR_LOCK_STORE_NOT_CONFIGURED", 500, "FAILED_PRECONDITION"),
    ("ERR_CONFIGURATION_STORE_NOT_FOUND", 500, "INVALID_ARGUMENT"),
    ("ERR_CONFIGURATION_STORE_NOT_CONFIGURED", 500, "FAILED_PRECONDITION"),
]


@pytest.mark.parametrize(("code", "status", "expected"), DAPR_CODES)
def test_each_dapr_error_code_gets_daprs_grpc_code(code: str, status: int, expected: str) -> None:
    assert grpc_code(CallError(code, "m", status)).name == expected


def test_a_code_dapr_answers_two_ways_names_its_grpc_code_where_it_is_raised() -> None:
    query = CallError("ERR_STATE_STORE_NOT_SUPPORTED", "m", 500, reason="DAPR_STATE_QUERYING_NOT_SUPPORTED")
    assert grpc_code(query) is grpc.StatusCode.INTERNAL
    tx = CallError("ERR_STATE_STORE_NOT_SUPPORTED", "m", 500, grpc_code="UNIMPLEMENTED",
                   reason="DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED")  # fmt: skip
    assert grpc_code(tx) is grpc.StatusCode.UNIMPLEMENTED
    assert CallError("ERR_STATE_STORE_NOT_SUPPORTED", "m", 500).rich_details() == [], "no guessed reason"


def test_the_status_carries_error_info_resource_info_and_bad_request() -> None:
    error = CallError(
        "ERR_MALFORMED_REQUEST", "input key 'a||b' can't contain '||'", 400,
        reason="DAPR_STATE_ILLEGAL_KEY", field_violations=[("key", "can't contain '||'")],
    ).located("state", "statestore")  # fmt: skip
    status = status_proto(error)
    assert (status.code, status.message) == (grpc.StatusCode.INVALID_ARGUMENT.value[0], error.message)
    info, resource, bad = (error_details_pb2.ErrorInfo(), error_details_pb2.ResourceInfo(),
                           error_details_pb2.BadRequest())  # fmt: skip
    assert status.details[0].Unpack(info) and (info.reason, info.domain) == (
        "DAPR_STATE_ILLEGAL_KEY",
        "dapr.io",
    )
    assert status.details[1].Unpack(resource)
    assert (resource.resource_type, resource.resource_name, resource.description) == (
        "state",
        "statestore",
        "",
    )
    assert status.details[2].Unpack(bad) and bad.field_violations[0].field == "key"


def test_located_returns_a_copy_and_names_no_resource_dapr_does_not() -> None:
    original = CallError("ERR_PUBSUB_NOT_FOUND", "pubsub nope not found", 404)
    named = original.located("pubsub", "nope")
    assert named is not original and "resource_type" not in original.details
    resource = named.rich_details()[1]
    assert (resource["resource_type"], resource["resource_name"], resource["description"]) == (
        "pubsub", "nope", "pubsub nope not found"
    )  # fmt: skip
    for code in ("ERR_STATE_STORE_NOT_FOUND", "ERR_STATE_STORE_NOT_CONFIGURED"):
        details = CallError(code, "m", 400).located("state", "nostore").rich_details()
        assert [d["@type"].rsplit(".", 1)[-1] for d in details] == ["ErrorInfo"], code


def test_http_bodies_carry_details_only_for_errors_with_a_dapr_reason() -> None:
    plain = CallError("ERR_MALFORMED_REQUEST", "bad", 400)
    assert plain.to_json() == {"errorCode": "ERR_MALFORMED_REQUEST", "message": "bad"}
    assert status_proto(plain).details == []
    conflict = CallError("ERR_STATE_SAVE", "possible etag mismatch", 409).located("state", "cart")
    assert conflict.to_json() == {"errorCode": "ERR_STATE_SAVE", "message": "possible etag mismatch"}, (
        "Dapr has no reason for an etag mismatch: no details"
    )
    assert grpc_code(conflict) is grpc.StatusCode.ABORTED


def test_only_reasons_that_exist_in_dapr() -> None:
    reasons = {
        CallError(code, "m", status).reason for code, status, _ in DAPR_CODES if CallError(code, "m").reason
    }
    assert reasons == {
        "DAPR_PUBSUB_NOT_FOUND", "DAPR_PUBSUB_NAME_EMPTY", "DAPR_PUBSUB_TOPICNAME_EMPTY",
        "DAPR_PUBSUB_NOT_CONFIGURED", "DAPR_PUBSUB_METADATA_DESERIALIZATION", "DAPR_PUBSUB_PUBLISH_MESSAGE",
        "DAPR_STATE_NOT_FOUND", "DAPR_STATE_NOT_CONFIGURED",
    }  # fmt: skip
    for code in ("ERR_PUBSUB_CLOUD_EVENTS_SER", "ERR_PUBSUB_EVENTS_SER", "ERR_STATE_STORE_NOT_SUPPORTED"):
        assert CallError(code, "m").reason is None, f"{code} has several reasons in Dapr: named where raised"


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, "INTERNAL"), (401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED"), (404, "NOT_FOUND"),
     (408, "CANCELLED"), (409, "ALREADY_EXISTS"), (429, "RESOURCE_EXHAUSTED"), (500, "UNKNOWN"),
     (501, "UNIMPLEMENTED"), (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED"), (418, "UNKNOWN")],
)  # fmt: skip
def test_a_callees_http_answer_maps_as_daprs_code_from_http_status(status: int, expected: str) -> None:
    body = b"the app's own words about what went wrong, longer than sixty-three characters"
    error = failure(status, body)
    assert grpc_code(error).name == expected
    info = error.rich_details()[0]
    assert info["reason"] == error.message and info["domain"] == "dapr.io"
    assert info["metadata"]["http.code"] == str(status)
    assert info["metadata"]["http.error_message"] == body[:63].decode(), "truncated as Dapr does"


def test_an_error_body_from_the_callees_sidecar_keeps_its_code() -> None:
    error = failure(404, b'{"errorCode": "ERR_DIRECT_INVOKE", "message": "app b is not found"}')
    assert (error.code, error.message, grpc_code(error)) == (
        "ERR_DIRECT_INVOKE", "app b is not found", grpc.StatusCode.NOT_FOUND
    )  # fmt: skip


def test_a_partly_failed_bulk_publish_is_an_internal_error_naming_the_failed_entries() -> None:
    error = partial_failure("pubsub", "orders", [Failure("2", "broker refused"), Failure("5", "too big")])
    assert (error.code, grpc_code(error)) == ("ERR_PUBSUB_PUBLISH_MESSAGE", grpc.StatusCode.INTERNAL)
    info = error.located("pubsub", "pubsub").rich_details()[0]
    assert info["reason"] == "DAPR_PUBSUB_PUBLISH_MESSAGE"
    assert info["metadata"] == {"topic": "orders", "error": "broker refused", "failedEntries": "2,5"}

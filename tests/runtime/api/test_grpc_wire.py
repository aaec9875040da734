"""gRPC metadata in and out, and the binary trace context."""

from __future__ import annotations

from multidict import CIMultiDict

from outrig.runtime.api.grpc.wire import incoming, outgoing, traceparent_from_binary

TRACE_ID, SPAN_ID = bytes(range(1, 17)), bytes(range(1, 9))


def binary(flags: int = 1) -> bytes:
    return b"\x00\x00" + TRACE_ID + b"\x01" + SPAN_ID + b"\x02" + bytes([flags])


def test_incoming_keeps_the_calls_metadata_and_drops_the_transports() -> None:
    metadata = incoming(
        [("user-agent", "grpc-python"), ("x-tenant", "acme"), ("grpc-accept-encoding", "gzip"),
         ("content-type", "application/grpc"), ("data-bin", b"\x00"), ("x-tenant", "other")]
    )  # fmt: skip
    assert list(metadata.items()) == [("x-tenant", "acme"), ("x-tenant", "other")]


def test_grpc_trace_bin_becomes_a_traceparent_unless_one_came() -> None:
    assert (
        incoming([("grpc-trace-bin", binary())])["traceparent"] == f"00-{TRACE_ID.hex()}-{SPAN_ID.hex()}-01"
    )
    sent = f"00-{'a' * 32}-{'b' * 16}-00"
    assert incoming([("traceparent", sent), ("grpc-trace-bin", binary())])["traceparent"] == sent


def test_malformed_binary_trace_context_is_ignored() -> None:
    assert traceparent_from_binary(b"\x01" + binary()[1:]) is None, "unknown version"
    assert traceparent_from_binary(binary()[:20]) is None, "truncated"
    assert traceparent_from_binary(b"\x00\x00" + bytes(16) + b"\x01" + SPAN_ID) is None, "zero trace id"
    assert traceparent_from_binary(binary(0)) == f"00-{TRACE_ID.hex()}-{SPAN_ID.hex()}-00"


def test_outgoing_sends_printable_text_and_never_the_transport_or_skipped_keys() -> None:
    metadata = CIMultiDict(
        [("Traceparent", "00-x"), ("content-type", "text/plain"), ("dapr-api-token", "t"), ("x-euro", "€")]
    )
    assert outgoing(metadata, skip=("dapr-api-token",)) == [("traceparent", "00-x")]

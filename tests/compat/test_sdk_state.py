"""State through the official SDK's gRPC clients (sync and async) against a real sidecar."""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
import httpx
import pytest
from dapr.aio.clients import DaprClient as AsyncDaprClient
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError, DaprInternalError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions

from tests.support import Processes


def test_state_with_etags_bulk_and_transactions(procs: Processes, point_sdk: Callable[..., str]) -> None:
    sidecar = procs.sidecar("sdk-state")
    with DaprClient(point_sdk(sidecar)) as client:
        client.save_state("statestore", "cart", '{"items": 1}')
        got = client.get_state("statestore", "cart")
        assert got.data == b'{"items": 1}' and got.etag
        assert httpx.get(sidecar.url("/v1.0/state/statestore/cart")).json() == {"items": 1}, "HTTP reads it"

        with pytest.raises(DaprGrpcError) as stale:
            client.save_state("statestore", "cart", "x", etag="not-the-etag")
        assert stale.value.code() == grpc.StatusCode.ABORTED
        assert stale.value.error_code() == "UNKNOWN", "Dapr gives an etag mismatch no ErrorInfo"
        client.save_state("statestore", "cart", "v2", etag=got.etag)
        assert client.get_state("statestore", "cart").data == b"v2"

        first = StateOptions(concurrency=Concurrency.first_write)
        with pytest.raises(DaprGrpcError):
            client.save_state("statestore", "cart", "v3", options=first)  # exists: first-write refuses
        client.save_bulk_state("statestore", [StateItem("a", "1"), StateItem("b", "2")])
        bulk = client.get_bulk_state("statestore", ["a", "b", "missing"])
        assert [(i.key, i.data) for i in bulk.items] == [("a", b"1"), ("b", b"2"), ("missing", b"")]

        client.execute_state_transaction(
            "statestore",
            [
                TransactionalStateOperation("c", "3"),
                TransactionalStateOperation("a", "", operation_type=TransactionOperationType.delete),
            ],
        )
        assert client.get_state("statestore", "a").data == b""
        assert client.get_state("statestore", "c").data == b"3"
        with pytest.raises(DaprGrpcError) as failed:
            client.execute_state_transaction(
                "statestore",
                [TransactionalStateOperation("d", "4"), TransactionalStateOperation("c", "x", etag="nope")],
            )
        assert failed.value.code() == grpc.StatusCode.ABORTED
        assert client.get_state("statestore", "d").data == b"", "a failed transaction applies nothing"

        client.delete_state("statestore", "c")
        assert client.get_state("statestore", "c").data == b""
        with pytest.raises(DaprGrpcError) as unknown:
            client.get_state("nostore", "k")
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert unknown.value.error_code() == "DAPR_STATE_NOT_FOUND"
        assert not unknown.value.status_details().resource_info, "none for a store that does not exist"
        with pytest.raises(DaprGrpcError) as illegal:
            client.save_state("statestore", "a||b", "v")
        assert illegal.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert illegal.value.error_code() == "DAPR_STATE_ILLEGAL_KEY"


@pytest.mark.filterwarnings("ignore:The State Store Query API is an Alpha:UserWarning")
def test_state_query_over_grpc(procs: Processes, point_sdk: Callable[..., str]) -> None:
    sidecar = procs.sidecar("sdk-query")
    with DaprClient(point_sdk(sidecar)) as client:
        for key, state in (("1", "CA"), ("2", "WA"), ("3", "CA")):
            client.save_state("statestore", key, json.dumps({"state": state}))
        query = {"filter": {"EQ": {"state": "CA"}}, "sort": [{"key": "state"}], "page": {"limit": 10}}
        answer = client.query_state("statestore", json.dumps(query))
        assert sorted(item.key for item in answer.results) == ["1", "3"]
        assert json.loads(answer.results[0].value) == {"state": "CA"}


async def test_the_async_client_saves_reads_and_transacts(
    procs: Processes, point_sdk: Callable[..., str]
) -> None:
    sidecar = procs.sidecar("sdk-async")
    async with AsyncDaprClient(point_sdk(sidecar)) as client:
        await client.save_state("statestore", "k", "v1")
        got = await client.get_state("statestore", "k")
        assert got.data == b"v1"
        await client.save_state("statestore", "k", "v2", etag=got.etag)
        with pytest.raises(DaprInternalError) as stale:  # how the async SDK reports every RPC error
            await client.save_state("statestore", "k", "v3", etag=got.etag)
        cause = stale.value.__cause__
        assert isinstance(cause, grpc.aio.AioRpcError) and cause.code() == grpc.StatusCode.ABORTED
        await client.execute_state_transaction("statestore", [TransactionalStateOperation("t", "x")])
        assert (await client.get_state("statestore", "t")).data == b"x"
        await client.delete_state("statestore", "t")
        assert (await client.get_state("statestore", "t")).data == b""

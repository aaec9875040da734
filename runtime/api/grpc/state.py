"""Dapr's state RPCs: each builds the state Call the HTTP API builds, with the request
already decoded (gRPC messages are structured), and answers from the block's result.

Values are bytes on gRPC and stored as sent, as Dapr does (the HTTP API stores the JSON
text of `value`), so a value saved by either API reads back through both.
"""

from __future__ import annotations

import json
from typing import Any

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import state_pb2
from google.protobuf import empty_pb2

from outrig.middleware import CallError

from ...blocks.state import BulkGetRequest, GetRequest, QueryRequest, WriteRequest, ttl_in_seconds
from ...components.state import Delete, Operation, Stored, Upsert
from ...components.state.base import Concurrency
from ...components.state.query import QueryError, QueryPage, parse_query
from ..state_http import ROUTE_BULK, ROUTE_KEY, ROUTE_QUERY, ROUTE_STORE, ROUTE_TRANSACTION
from .calls import Context, Pipeline, rpc_call, run
from .wire import text_map

_CONCURRENCY: dict[int, Concurrency] = {
    common_pb2.StateOptions.CONCURRENCY_FIRST_WRITE: "first-write",
    common_pb2.StateOptions.CONCURRENCY_LAST_WRITE: "last-write",
}


def _bad(message: str, field: str) -> CallError:
    return CallError("ERR_MALFORMED_REQUEST", message, 400, field_violations=[(field, message)])


def _concurrency(item: common_pb2.StateItem | state_pb2.DeleteStateRequest) -> Concurrency:
    return _CONCURRENCY.get(item.options.concurrency) if item.HasField("options") else None


def _upsert(item: common_pb2.StateItem, where: str) -> Upsert:
    if not item.key:
        raise _bad(f"{where}: key is empty; every state item needs a key", f"{where}.key")
    metadata = text_map(item.metadata)
    etag = item.etag.value if item.HasField("etag") else None
    return Upsert(
        item.key, item.value, etag or None, _concurrency(item), ttl_in_seconds(metadata, where), metadata
    )


def _delete(item: common_pb2.StateItem, where: str) -> Delete:
    if not item.key:
        raise _bad(f"{where}: key is empty; every state item needs a key", f"{where}.key")
    etag = item.etag.value if item.HasField("etag") else None
    return Delete(item.key, etag or None, _concurrency(item))


class StateRpcs:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def rpcs(self) -> dict[str, Any]:
        return {
            "GetState": self.get_state,
            "GetBulkState": self.get_bulk_state,
            "SaveState": self.save_state,
            "DeleteState": self.delete_state,
            "DeleteBulkState": self.delete_bulk_state,
            "ExecuteStateTransaction": self.execute_state_transaction,
            "QueryStateAlpha1": self.query_state,
        }

    async def get_state(
        self, request: state_pb2.GetStateRequest, context: Context
    ) -> state_pb2.GetStateResponse:
        call = rpc_call(
            context, "GetState", block="state", operation="get", target=request.store_name,
            subject=request.key, route=ROUTE_KEY, verb="GET", request=GetRequest(request.key),
        )  # fmt: skip
        stored: Stored | None = (await run(self.pipeline, call, context)).value
        if stored is None:
            return state_pb2.GetStateResponse()
        return state_pb2.GetStateResponse(data=stored.value, etag=stored.etag)

    async def get_bulk_state(
        self, request: state_pb2.GetBulkStateRequest, context: Context
    ) -> state_pb2.GetBulkStateResponse:
        call = rpc_call(
            context, "GetBulkState", block="state", operation="bulk_get", target=request.store_name,
            subject="bulk", route=ROUTE_BULK, verb="POST", request=BulkGetRequest(list(request.keys)),
        )  # fmt: skip
        found: list[tuple[str, Stored | None]] = (await run(self.pipeline, call, context)).value
        items = [
            state_pb2.BulkStateItem(key=key, data=item.value, etag=item.etag)
            if item is not None
            else state_pb2.BulkStateItem(key=key)
            for key, item in found
        ]
        return state_pb2.GetBulkStateResponse(items=items)

    async def save_state(self, request: state_pb2.SaveStateRequest, context: Context) -> empty_pb2.Empty:
        operations: list[Operation] = [_upsert(item, f"states[{i}]") for i, item in enumerate(request.states)]
        call = rpc_call(
            context, "SaveState", block="state", operation="save", target=request.store_name,
            subject="", route=ROUTE_STORE, verb="POST", request=WriteRequest(operations),
        )  # fmt: skip
        await run(self.pipeline, call, context)
        return empty_pb2.Empty()

    async def delete_state(self, request: state_pb2.DeleteStateRequest, context: Context) -> empty_pb2.Empty:
        etag = request.etag.value if request.HasField("etag") else None
        delete = Delete(request.key, etag or None, _concurrency(request))
        call = rpc_call(
            context, "DeleteState", block="state", operation="delete", target=request.store_name,
            subject=request.key, route=ROUTE_KEY, verb="DELETE", request=WriteRequest([delete]),
        )  # fmt: skip
        await run(self.pipeline, call, context)
        return empty_pb2.Empty()

    async def delete_bulk_state(
        self, request: state_pb2.DeleteBulkStateRequest, context: Context
    ) -> empty_pb2.Empty:
        operations: list[Operation] = [_delete(item, f"states[{i}]") for i, item in enumerate(request.states)]
        call = rpc_call(
            context, "DeleteBulkState", block="state", operation="delete", target=request.store_name,
            subject="", route=ROUTE_STORE, verb="DELETE", request=WriteRequest(operations),
        )  # fmt: skip
        await run(self.pipeline, call, context)
        return empty_pb2.Empty()

    async def execute_state_transaction(
        self, request: state_pb2.ExecuteStateTransactionRequest, context: Context
    ) -> empty_pb2.Empty:
        operations: list[Operation] = []
        for i, entry in enumerate(request.operations):
            where = f"operations[{i}]"
            if entry.operationType == "upsert":
                operations.append(_upsert(entry.request, where))
            elif entry.operationType == "delete":
                operations.append(_delete(entry.request, where))
            else:
                raise _bad(
                    f"{where}: operationType must be upsert or delete, got {entry.operationType!r}",
                    f"{where}.operationType",
                )
        write = WriteRequest(operations, atomic=True, metadata=text_map(request.metadata))
        call = rpc_call(
            context, "ExecuteStateTransaction", block="state", operation="transaction",
            target=request.storeName, subject="transaction", route=ROUTE_TRANSACTION, verb="POST",
            request=write,
        )  # fmt: skip
        await run(self.pipeline, call, context)
        return empty_pb2.Empty()

    async def query_state(
        self, request: state_pb2.QueryStateRequest, context: Context
    ) -> state_pb2.QueryStateResponse:
        try:
            query = parse_query(json.loads(request.query) if request.query.strip() else {})
        except QueryError as exc:
            raise _bad(str(exc), "query") from None
        except ValueError as exc:
            raise _bad(f"query: not valid JSON ({exc})", "query") from None
        call = rpc_call(
            context, "QueryStateAlpha1", block="state", operation="query", target=request.store_name,
            subject="query", route=ROUTE_QUERY, verb="POST", request=QueryRequest(query),
        )  # fmt: skip
        page: QueryPage = (await run(self.pipeline, call, context)).value
        results = [
            state_pb2.QueryStateItem(key=item.key, data=item.value, etag=item.etag or "")
            for item in page.items
        ]
        return state_pb2.QueryStateResponse(results=results, token=page.token or "")

"""InvokeBinding, GetSecret/GetBulkSecret, TryLockAlpha1/UnlockAlpha1: the same Calls as
their HTTP twins (`/v1.0/bindings/{name}`, `/v1.0/secrets/...`, `/v1.0-alpha1/(un)lock/...`)."""

from __future__ import annotations

from typing import Any

from dapr.proto.runtime.v1 import binding_pb2, lock_pb2, secret_pb2

from outrig.middleware import CallError

from ...blocks.bindings import OutputRequest
from ...blocks.lock import TryLockRequest, UnlockRequest
from ...blocks.secrets import BulkSecretRequest, GetSecretRequest
from ...components.bindings import BindingResponse
from ..bindings_http import ROUTE_BINDING
from ..lock_http import ROUTE_LOCK, ROUTE_UNLOCK
from ..secrets_http import ROUTE_BULK, ROUTE_SECRET
from .calls import Context, Pipeline, rpc_call, run
from .wire import text_map


def _required(value: str, field: str, rpc: str) -> str:
    if not value:
        message = f"{rpc}: {field} is empty"
        raise CallError("ERR_MALFORMED_REQUEST", message, 400, field_violations=[(field, message)])
    return value


class BlockRpcs:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def rpcs(self) -> dict[str, Any]:
        return {
            "InvokeBinding": self.invoke_binding,
            "GetSecret": self.get_secret,
            "GetBulkSecret": self.get_bulk_secret,
            "TryLockAlpha1": self.try_lock,
            "UnlockAlpha1": self.unlock,
        }

    async def invoke_binding(
        self, request: binding_pb2.InvokeBindingRequest, context: Context
    ) -> binding_pb2.InvokeBindingResponse:
        name = _required(request.name, "name", "InvokeBinding")
        operation = _required(request.operation, "operation", "InvokeBinding")
        call = rpc_call(
            context, "InvokeBinding", block="bindings", operation="invoke", target=name, subject="",
            route=ROUTE_BINDING, verb="POST",
            request=OutputRequest(operation, request.data, text_map(request.metadata)),
        )  # fmt: skip
        response: BindingResponse = (await run(self.pipeline, call, context)).value
        return binding_pb2.InvokeBindingResponse(data=response.data, metadata=text_map(response.metadata))

    async def get_secret(
        self, request: secret_pb2.GetSecretRequest, context: Context
    ) -> secret_pb2.GetSecretResponse:
        store = _required(request.store_name, "store_name", "GetSecret")
        key = _required(request.key, "key", "GetSecret")
        call = rpc_call(
            context, "GetSecret", block="secrets", operation="get", target=store, subject=key,
            route=ROUTE_SECRET, verb="GET", request=GetSecretRequest(key, text_map(request.metadata)),
        )  # fmt: skip
        found: dict[str, str] = (await run(self.pipeline, call, context)).value
        return secret_pb2.GetSecretResponse(data=found)

    async def get_bulk_secret(
        self, request: secret_pb2.GetBulkSecretRequest, context: Context
    ) -> secret_pb2.GetBulkSecretResponse:
        store = _required(request.store_name, "store_name", "GetBulkSecret")
        call = rpc_call(
            context, "GetBulkSecret", block="secrets", operation="bulk_get", target=store, subject="",
            route=ROUTE_BULK, verb="GET", request=BulkSecretRequest(text_map(request.metadata)),
        )  # fmt: skip
        found: dict[str, dict[str, str]] = (await run(self.pipeline, call, context)).value
        return secret_pb2.GetBulkSecretResponse(
            data={name: secret_pb2.SecretResponse(secrets=values) for name, values in found.items()}
        )

    async def try_lock(self, request: lock_pb2.TryLockRequest, context: Context) -> lock_pb2.TryLockResponse:
        store = _required(request.store_name, "store_name", "TryLockAlpha1")
        resource = _required(request.resource_id, "resource_id", "TryLockAlpha1")
        owner = _required(request.lock_owner, "lock_owner", "TryLockAlpha1")
        if request.expiry_in_seconds <= 0:
            message = f"TryLockAlpha1: expiry_in_seconds must be above 0, got {request.expiry_in_seconds}"
            raise CallError("ERR_MALFORMED_REQUEST", message, 400,
                            field_violations=[("expiry_in_seconds", message)])  # fmt: skip
        call = rpc_call(
            context, "TryLockAlpha1", block="lock", operation="try_lock", target=store, subject="",
            route=ROUTE_LOCK, verb="POST", request=TryLockRequest(resource, owner, request.expiry_in_seconds),
        )  # fmt: skip
        taken = (await run(self.pipeline, call, context)).value
        return lock_pb2.TryLockResponse(success=bool(taken))

    async def unlock(self, request: lock_pb2.UnlockRequest, context: Context) -> lock_pb2.UnlockResponse:
        store = _required(request.store_name, "store_name", "UnlockAlpha1")
        resource = _required(request.resource_id, "resource_id", "UnlockAlpha1")
        owner = _required(request.lock_owner, "lock_owner", "UnlockAlpha1")
        call = rpc_call(
            context, "UnlockAlpha1", block="lock", operation="unlock", target=store, subject="",
            route=ROUTE_UNLOCK, verb="POST", request=UnlockRequest(resource, owner),
        )  # fmt: skip
        status = (await run(self.pipeline, call, context)).value
        return lock_pb2.UnlockResponse(status=lock_pb2.UnlockResponse.Status.ValueType(int(status)))

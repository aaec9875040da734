"""Secrets: Dapr's secrets API over secret stores, with the Configuration's scopes.

The block checks the store exists (401 `ERR_SECRET_STORE_NOT_FOUND`, Dapr's runtime
status) and that this app may read the secret (`spec.secrets.scopes`: 403
`ERR_PERMISSION_DENIED`), then reads through the store's component pipeline, so the read
is a CLIENT span of its own. A bulk read leaves out the secrets the scopes deny, as Dapr.
Error messages name stores and secrets, never values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from outrig.middleware import Call, CallError, Hop, Next, Pipeline, Result

from ..components.secretstores import Secret, SecretError, SecretNotFoundError, SecretStore
from ..resources.models import SecretScopeSpec, SecretsSpec
from .requests import request_of


@dataclass(frozen=True)
class GetSecretRequest:
    name: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BulkSecretRequest:
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass
class SecretStoreEntry:
    name: str
    type: str
    store: SecretStore
    pipeline: Pipeline


class SecretScopes:
    """`spec.secrets.scopes`: per store, `defaultAccess`, `allowedSecrets`, `deniedSecrets`
    (Dapr's rules: a non-empty allow list is the only thing that counts; else a denied
    name is refused; else the default). A store without a scope allows everything."""

    def __init__(self, scopes: Sequence[SecretScopeSpec] = ()) -> None:
        self.scopes = {scope.storeName: scope for scope in scopes}

    def allows(self, store: str, secret: str) -> bool:
        scope = self.scopes.get(store)
        if scope is None:
            return True
        if scope.allowedSecrets:
            return secret in scope.allowedSecrets
        if secret in scope.deniedSecrets:
            return False
        return scope.defaultAccess == "allow"


class SecretsBlock:
    """The endpoint of inbound pipelines for `secrets` calls."""

    def __init__(self, stores: Mapping[str, SecretStoreEntry], scopes: SecretScopes) -> None:
        self.stores = stores
        self.scopes = scopes

    def entry(self, name: str) -> SecretStoreEntry:
        entry = self.stores.get(name)
        if entry is None:
            if not self.stores:
                raise CallError(
                    "ERR_SECRET_STORES_NOT_CONFIGURED",
                    "secret store is not configured: add a Component of type secretstores.local.file "
                    "or secretstores.local.env to a --resources-path folder",
                    500,
                )
            names = ", ".join(sorted(self.stores))
            raise CallError(
                "ERR_SECRET_STORE_NOT_FOUND",
                f"failed finding secret store with key {name} (configured: {names})",
                401,
            )
        return entry

    async def __call__(self, call: Call) -> Result:
        entry = self.entry(call.target)
        request = await request_of(call)
        if isinstance(request, GetSecretRequest):
            if not self.scopes.allows(entry.name, request.name):
                raise CallError(
                    "ERR_PERMISSION_DENIED",
                    f"access denied by policy to get {request.name!r} from {entry.name!r}",
                    403,
                )
            secret = await self._store_call(entry, call, "get", "GetSecret", request.name, request)
            return Result(200, value=secret)
        if isinstance(request, BulkSecretRequest):
            found: dict[str, Secret] = await self._store_call(
                entry, call, "bulk_get", "BulkGetSecret", "", request
            )
            allowed = {name: s for name, s in found.items() if self.scopes.allows(entry.name, name)}
            return Result(200, value=allowed)
        raise CallError("ERR_MALFORMED_REQUEST", f"unknown secrets request {type(request).__name__}", 400)

    async def _store_call(
        self, entry: SecretStoreEntry, call: Call, operation: str, name: str, subject: str, request: object
    ) -> Any:
        outbound = Call(
            block="secrets", operation=operation, target=entry.name, subject=subject, hop=Hop.COMPONENT,
            route="", metadata=call.metadata, request=request,
            attributes={"db.system.name": entry.type, "db.operation.name": name},
        )  # fmt: skip
        result = await entry.pipeline(outbound)
        return result.value


class SecretEndpoint:
    """The end of a secret store's component pipeline: one read, errors as Dapr's."""

    def __init__(self, store: SecretStore) -> None:
        self.store = store

    async def __call__(self, call: Call) -> Result:
        request = call.request
        try:
            if isinstance(request, GetSecretRequest):
                return Result(200, value=self.store.get(request.name, request.metadata))
            assert isinstance(request, BulkSecretRequest)
            return Result(200, value=self.store.bulk_get(request.metadata))
        except SecretNotFoundError as exc:
            raise CallError(
                "ERR_SECRET_GET",
                f"failed getting secret with key {call.subject} from secret store {call.target}: {exc}",
                500,
            ) from None
        except SecretError as exc:
            what = f"secret with key {call.subject}" if call.subject else "secrets"
            raise CallError(
                "ERR_SECRET_GET", f"failed getting {what} from secret store {call.target}: {exc}", 500
            ) from None


def build(
    opened: Mapping[str, tuple[str, SecretStore]],
    spec: SecretsSpec | None,
    pipeline: Callable[[str, str, Next], Pipeline],
) -> SecretsBlock:
    """The block over the opened stores, each with its component pipeline."""
    entries = {
        name: SecretStoreEntry(name, kind, store, pipeline(name, kind, SecretEndpoint(store)))
        for name, (kind, store) in opened.items()
    }
    return SecretsBlock(entries, SecretScopes(spec.scopes if spec is not None else ()))

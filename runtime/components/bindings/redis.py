"""`bindings.redis`: keys in Redis, as Dapr's output binding (create, get, delete, increment).

Request metadata `key` names the key; `create` sets it to the data (with
`ttlInSeconds`, as Dapr), `get` answers its value (no data when missing: HTTP 204),
`delete` removes it, `increment` adds one to it. Connection metadata is the Redis
components' (`redisHost`, `redisPassword`, `redisDB`, `enableTLS`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..redis_connection import RedisConnection, RedisReplyError, RedisSettings, RedisUnavailableError
from .base import BindingError, BindingRequest, BindingRequestError, BindingResponse


class RedisBinding:
    operations = ("create", "get", "delete", "increment")

    def __init__(self, settings: RedisSettings) -> None:
        self.connection = RedisConnection(settings)
        self.span_attributes: Mapping[str, str | int] = {
            "db.system.name": "redis",
            "db.namespace": str(settings.db),
            "server.address": settings.host,
            "server.port": settings.port,
        }

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any]) -> RedisBinding:
        return cls(RedisSettings.from_metadata(metadata))

    async def invoke(self, request: BindingRequest) -> BindingResponse:
        key = request.metadata.get("key", "")
        if not key:
            raise BindingRequestError(f"metadata.key is required for {request.operation}")
        try:
            if request.operation == "create":
                ttl = request.metadata.get("ttlInSeconds", "")
                if ttl and not (ttl.isascii() and ttl.isdecimal()):  # isdigit takes "²", int() refuses it
                    raise BindingRequestError(f"metadata.ttlInSeconds must be a whole number, got {ttl!r}")
                extra: list[str | int] = ["EX", int(ttl)] if ttl and int(ttl) > 0 else []
                await self.connection.execute("SET", key, request.data, *extra)
                return BindingResponse()
            if request.operation == "get":
                value = await self.connection.execute("GET", key)
                return BindingResponse(value or b"")
            if request.operation == "increment":
                await self.connection.execute("INCR", key)
                return BindingResponse()
            await self.connection.execute("DEL", key)
            return BindingResponse()
        except RedisUnavailableError as exc:
            raise BindingError(f"redis {self.connection.settings.address}: {exc}") from None
        except RedisReplyError as exc:
            raise BindingError(f"redis: {exc}") from None

    async def close(self) -> None:
        await self.connection.close()

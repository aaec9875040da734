"""`bindings.redis` against a real Redis: create (with TTL), get, delete, increment."""

from __future__ import annotations

import secrets

import pytest
import redis

from outrig.runtime.components.bindings import BindingError, BindingRequest, BindingRequestError, RedisBinding
from tests.redis_server import RedisServer
from tests.support import free_port


async def test_create_get_delete_increment(redis_server: RedisServer) -> None:
    binding = RedisBinding.create("cache", {"redisHost": redis_server.address})
    key = f"binding-{secrets.token_hex(4)}"
    direct = redis.Redis(port=redis_server.port)
    try:
        assert (await binding.invoke(BindingRequest("create", b"v1", {"key": key}))).data == b""
        assert direct.get(key) == b"v1" and direct.ttl(key) == -1
        assert (await binding.invoke(BindingRequest("get", b"", {"key": key}))).data == b"v1"
        await binding.invoke(BindingRequest("create", b"v2", {"key": key, "ttlInSeconds": "100"}))
        assert direct.get(key) == b"v2" and 0 < direct.ttl(key) <= 100
        await binding.invoke(BindingRequest("delete", b"", {"key": key}))
        assert (await binding.invoke(BindingRequest("get", b"", {"key": key}))).data == b""
        await binding.invoke(BindingRequest("increment", b"", {"key": key}))
        await binding.invoke(BindingRequest("increment", b"", {"key": key}))
        assert direct.get(key) == b"2"
    finally:
        direct.delete(key)
        direct.close()
        await binding.close()


async def test_bad_requests_and_an_unreachable_server(redis_server: RedisServer) -> None:
    binding = RedisBinding.create("cache", {"redisHost": redis_server.address})
    try:
        with pytest.raises(BindingRequestError, match=r"metadata\.key is required"):
            await binding.invoke(BindingRequest("get"))
        with pytest.raises(BindingRequestError, match="ttlInSeconds"):
            await binding.invoke(BindingRequest("create", b"x", {"key": "k", "ttlInSeconds": "soon"}))
        with pytest.raises(BindingRequestError, match="ttlInSeconds"):  # a digit `int` refuses
            await binding.invoke(BindingRequest("create", b"x", {"key": "k", "ttlInSeconds": "\u00b2"}))
    finally:
        await binding.close()
    down = RedisBinding.create("cache", {"redisHost": f"127.0.0.1:{free_port()}", "dialTimeout": "1s"})
    try:
        with pytest.raises(BindingError, match="cannot connect"):
            await down.invoke(BindingRequest("get", b"", {"key": "k"}))
    finally:
        await down.close()

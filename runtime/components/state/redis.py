"""`state.redis`: state in a Redis server, laid out as Dapr's Redis store lays it out.

Each key is a hash `{data, version}`; the etag is the version ("1", "2", ...), raised by
`HINCRBY` on every write, so apps and tools that read Dapr's layout read ours. Where Dapr
is weak we do better: every write batch is one Lua script, so etag checks and writes are
atomic, and a transaction whose etag check fails applies nothing (Dapr's runs its scripts
in MULTI/EXEC, which keeps the operations before a failed one).

Commands go over one pipelined connection (`RedisConnection`; why not redis-py there).
Nothing retries on its own: a write whose reply was lost may have been applied, and a
blind retry of an etag-checked write would then report a false conflict. Retrying is the
resiliency middleware's job, per the component's policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..metadata import whole_number
from ..redis_connection import RedisConnection, RedisReplyError, RedisSettings, RedisUnavailableError, Script
from .base import EtagMismatchError, Operation, StateError, Stored, Upsert

# ARGV: atomic flag, then per key: kind (set|del), check (none|etag|absent), etag, value, ttl.
# Returns 0, or the 1-based index of the operation whose etag check failed. Atomic batches
# check every operation (against the state the earlier ones leave) before writing any.
WRITE_SCRIPT = Script("""
local atomic = ARGV[1] == "1"
local seen = {}
local function current(key)
  if seen[key] ~= nil then return seen[key] end
  local kind = redis.call("TYPE", key)["ok"]
  if kind == "none" then return false end
  if kind ~= "hash" then return "" end
  return redis.call("HGET", key, "version") or ""
end
local function allowed(check, etag, cur)
  if check == "none" then return true end
  if check == "absent" then return cur == false end
  return cur ~= false and cur == etag
end
local function write(key, kind, value, ttl)
  if kind == "del" then
    redis.call("DEL", key)
    return
  end
  if redis.call("TYPE", key)["ok"] ~= "hash" then redis.call("DEL", key) end
  redis.call("HSET", key, "data", value)
  redis.call("HINCRBY", key, "version", 1)
  local seconds = tonumber(ttl)
  if seconds and seconds > 0 then redis.call("EXPIRE", key, seconds) else redis.call("PERSIST", key) end
end
local function step(i, apply)
  local a = 2 + (i - 1) * 5
  local key, kind, check, etag = KEYS[i], ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local cur = current(key)
  if not allowed(check, etag, cur) then return false end
  if apply then
    write(key, kind, ARGV[a + 3], ARGV[a + 4])
  elseif kind == "del" then
    seen[key] = false
  else
    seen[key] = tostring((tonumber(cur) or 0) + 1)
  end
  return true
end
if atomic then
  for i = 1, #KEYS do
    if not step(i, false) then return i end
  end
  seen = {}
end
for i = 1, #KEYS do
  if not step(i, true) then return i end
end
return 0
""")


class RedisStore:
    features = frozenset({"ETAG", "TRANSACTIONAL", "TTL"})

    def __init__(self, settings: RedisSettings, default_ttl: int | None = None) -> None:
        self.connection = RedisConnection(settings)
        self.address = settings.address
        self.default_ttl = default_ttl
        self.span_attributes: Mapping[str, str | int] = {
            "db.system.name": "redis", "db.namespace": str(settings.db),
            "server.address": settings.host, "server.port": settings.port,
        }  # fmt: skip

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any], home: Path) -> RedisStore:
        return cls(RedisSettings.from_metadata(metadata), whole_number(metadata, "ttlInSeconds", None))

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """Connection and reply errors as `StateError`s that name the server."""
        try:
            yield
        except (RedisUnavailableError, RedisReplyError) as exc:
            raise StateError(f"redis at {self.address}: {exc}") from None

    async def ping(self) -> None:
        with self._reaching():
            await self.connection.execute("PING")

    async def get(self, key: str) -> Stored | None:
        with self._reaching():
            return await self._get(key)

    async def bulk_get(self, keys: Sequence[str]) -> list[Stored | None]:
        with self._reaching():  # concurrent commands share the connection: one pipeline
            return list(await asyncio.gather(*(self._get(key) for key in keys)))

    async def _get(self, key: str) -> Stored | None:
        try:
            data, version = await self.connection.execute("HMGET", key, "data", "version")
        except RedisReplyError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            plain = await self.connection.execute("GET", key)  # a string written by other tools
            return None if plain is None else Stored(key, plain, "")
        return None if data is None else Stored(key, data, (version or b"").decode())

    async def apply(self, operations: Sequence[Operation], *, atomic: bool) -> None:
        args: list[str | bytes | int] = ["1" if atomic else "0"]
        for op in operations:
            check = "none" if not op.checks_etag else ("absent" if op.etag is None else "etag")
            if isinstance(op, Upsert):
                ttl = op.ttl_seconds if op.ttl_seconds is not None else self.default_ttl
                args += ["set", check, op.etag or "", op.value, "" if ttl is None else str(ttl)]
            else:
                args += ["del", check, op.etag or "", b"", ""]
        with self._reaching():
            failed = int(await self.connection.run_script(WRITE_SCRIPT, [op.key for op in operations], args))
        if failed:
            raise EtagMismatchError(f"etag mismatch for key {operations[failed - 1].key!r}")

    async def close(self) -> None:
        await self.connection.close()

"""GCRA (the generic cell rate algorithm): the cluster-wide limit's arithmetic.

One number per key, the theoretical arrival time (TAT) of the next call: a call of cost n
is admitted when `TAT + n*T - burst*T <= now` (T = 1/rate), and moves TAT forward by n*T.
Equivalent to a token bucket, but its whole state is one timestamp, so one Redis key and
one short Lua script make each decision atomic for every sidecar sharing the limit. The
script reads Redis's own clock (`TIME`), so sidecars with skewed clocks still agree.

`decide` is the same arithmetic in Python, for tests with an injected clock.
"""

from __future__ import annotations

from .decision import Decision

SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local reserve = ARGV[4] == '1'
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - burst * interval
if allow_at > now and not reserve then
  return {0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
if allow_at < now then allow_at = now end
return {1, allow_at - now, new_tat - now}
"""
"""KEYS[1]: the limit's key. ARGV: T in microseconds (may be fractional), burst, cost, and
'1' to reserve (take the tokens even when not there yet: a delivery then sleeps the
microseconds answered; '0' or absent: a plain decision). TAT is stored formatted by the
script: Lua would write a bare number with 14 significant digits, too few for microseconds
since 1970. Returns {admitted (1/0), microseconds until admitted, microseconds until the
bucket is full}. The key expires when the bucket is full again, so idle keys cost Redis
nothing.

`TIME` before a write is only allowed with effects replication: the default from Redis 5,
and asked for by `redis.replicate_commands()` on 3.2 and 4 (the call is skipped where it no
longer exists). Older Redis refuses the script."""


def decision_from_reply(reply: list[int], interval_us: float, burst: int) -> Decision:
    """The script's reply as a Decision."""
    allowed, wait_us, backlog_us = int(reply[0]), int(reply[1]), int(reply[2])
    remaining = max(0, int(burst - backlog_us / interval_us))
    return Decision(bool(allowed), burst, remaining, wait_us / 1e6, backlog_us / 1e6)


def decide(
    tat: float | None, now: float, rate: float, burst: int, cost: int = 1, reserve: bool = False
) -> tuple[Decision, float]:
    """The decision for a call at `now`, and the TAT to store (unchanged when limited). With
    `reserve` the call is always admitted, its `retry_after` the wait it must sleep off."""
    interval = 1.0 / rate
    tat = now if tat is None or tat < now else tat
    new_tat = tat + cost * interval
    allow_at = new_tat - burst * interval
    if reserve:
        remaining = max(0, int(burst - (new_tat - now) / interval + 1e-9))
        return Decision(True, burst, remaining, max(0.0, allow_at - now), new_tat - now), new_tat
    if allow_at > now + 1e-9:
        remaining = max(0, int(burst - (tat - now) / interval + 1e-9))
        return Decision(False, burst, remaining, allow_at - now, tat - now), tat
    remaining = max(0, int(burst - (new_tat - now) / interval + 1e-9))
    return Decision(True, burst, remaining, 0.0, new_tat - now), new_tat

"""GCRA: the arithmetic on an injected clock, and the Lua script in a real Redis agreeing with it."""

from __future__ import annotations

import secrets

import pytest
import redis

from outrig.middleware.ratelimit.gcra import SCRIPT, decide, decision_from_reply
from tests.redis_server import RedisServer


def test_admits_the_burst_then_one_per_interval() -> None:
    tat: float | None = None
    allowed = []
    for _ in range(5):
        decision, tat = decide(tat, 0.0, rate=10, burst=3)
        allowed.append(decision.allowed)
    assert allowed == [True, True, True, False, False]
    decision, tat = decide(tat, 0.1, rate=10, burst=3)
    assert decision.allowed and decision.remaining == 0


def test_a_refused_call_says_when_to_retry_and_changes_nothing() -> None:
    tat: float | None = None
    for _ in range(2):
        _, tat = decide(tat, 0.0, rate=4, burst=2)
    refused, after = decide(tat, 0.0, rate=4, burst=2)
    assert not refused.allowed and after == tat
    assert refused.retry_after == pytest.approx(0.25)
    assert refused.reset == pytest.approx(0.5)


def test_matches_a_token_bucket_over_time() -> None:
    tat: float | None = None
    admitted = 0
    for i in range(3000):  # 300 calls/s for 10 s against 100/s
        decision, tat = decide(tat, i / 300, rate=100, burst=5)
        admitted += decision.allowed
    assert admitted == pytest.approx(1000 + 5, abs=1)


def test_remaining_counts_down() -> None:
    tat: float | None = None
    seen = []
    for _ in range(3):
        decision, tat = decide(tat, 0.0, rate=1, burst=3)
        seen.append(decision.remaining)
    assert seen == [2, 1, 0]


def test_the_lua_script_decides_as_the_python_does(redis_server: RedisServer) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    key = f"test:gcra:{secrets.token_hex(4)}"
    rate, burst = 0.5, 3  # slow enough that the test's own time does not refill a token
    interval_us = 1e6 / rate
    run = client.register_script(SCRIPT)
    decisions = [decision_from_reply(run(keys=[key], args=[repr(interval_us), burst, 1]), interval_us, burst)
                 for _ in range(4)]  # fmt: skip
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert decisions[3].retry_after == pytest.approx(2.0, abs=0.05)
    assert 0 < client.pttl(key) <= 6000  # gone once the bucket would be full again
    cost_two = decision_from_reply(
        run(keys=[key + "x"], args=[repr(interval_us), burst, 2]), interval_us, burst
    )
    assert cost_two.allowed and cost_two.remaining == 1
    client.close()


def test_the_stored_time_keeps_microseconds(redis_server: RedisServer) -> None:
    """Lua would write a bare number with 14 digits; the script formats it itself."""
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    key = f"test:gcra:{secrets.token_hex(4)}"
    client.register_script(SCRIPT)(keys=[key], args=["3333.333", 10, 1])
    stored = client.get(key)
    assert stored is not None and b"e" not in stored and b"." in stored
    client.close()


def test_a_reservation_is_always_admitted_and_says_how_long_to_wait() -> None:
    tat: float | None = None
    waits = []
    for _ in range(4):
        decision, tat = decide(tat, 0.0, rate=10, burst=2, reserve=True)
        assert decision.allowed
        waits.append(decision.retry_after)
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2])
    refused, _ = decide(tat, 0.0, rate=10, burst=2)  # plain calls queue behind the reservations
    assert not refused.allowed and refused.retry_after == pytest.approx(0.3)


def test_the_lua_script_reserves_as_the_python_does(redis_server: RedisServer) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    key = f"test:gcra:{secrets.token_hex(4)}"
    rate, burst = 0.5, 2
    interval_us = 1e6 / rate
    run = client.register_script(SCRIPT)
    args: list[str | int] = [repr(interval_us), burst, 1, "1"]
    reserved = [decision_from_reply(run(keys=[key], args=args), interval_us, burst) for _ in range(4)]
    assert all(d.allowed for d in reserved)
    assert [d.retry_after for d in reserved] == pytest.approx([0.0, 0.0, 2.0, 4.0], abs=0.05)
    plain = decision_from_reply(run(keys=[key], args=[repr(interval_us), burst, 1, "0"]), interval_us, burst)
    assert not plain.allowed and plain.retry_after == pytest.approx(6.0, abs=0.05)
    client.close()

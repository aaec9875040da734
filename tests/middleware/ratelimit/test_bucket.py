"""The token bucket's arithmetic, on an injected clock."""

from __future__ import annotations

import pytest

from outrig.middleware.ratelimit import LocalLimits, TokenBucket
from outrig.middleware.ratelimit.bucket import whole_seconds


def test_a_full_bucket_admits_its_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    decisions = [bucket.take(0.0) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[3].retry_after == pytest.approx(0.1)
    assert decisions[3].reset == pytest.approx(0.3)
    assert decisions[3].limit == 3


def test_tokens_refill_at_the_rate_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    for _ in range(3):
        bucket.take(0.0)
    assert not bucket.take(0.05).allowed
    assert bucket.take(0.1).allowed  # exactly one token back after 1/rate
    assert not bucket.take(0.1).allowed
    assert bucket.level(100.0) == 3  # never more than the burst


def test_admissions_over_time_follow_the_rate() -> None:
    bucket = TokenBucket(rate=100, burst=1, now=0.0)
    admitted = sum(bucket.take(i / 300).allowed for i in range(3000))  # 300 calls/s for 10 s
    assert admitted == pytest.approx(1000, abs=1)


def test_a_cost_above_the_tokens_waits_for_all_of_them() -> None:
    bucket = TokenBucket(rate=2, burst=4, now=0.0)
    assert bucket.take(0.0, cost=3).allowed
    refused = bucket.take(0.0, cost=3)
    assert not refused.allowed and refused.retry_after == pytest.approx(1.0)
    assert bucket.take(1.0, cost=3).allowed


def test_a_clock_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=1, now=10.0)
    assert bucket.take(10.0).allowed
    assert not bucket.take(5.0).allowed
    assert bucket.take(11.0).allowed


def test_keys_have_buckets_of_their_own() -> None:
    limits = LocalLimits(rate=1, burst=1)
    assert limits.take("a", 0.0).allowed
    assert not limits.take("a", 0.0).allowed
    assert limits.take("b", 0.0).allowed


def test_the_least_recently_used_key_is_forgotten_past_max_keys() -> None:
    limits = LocalLimits(rate=1, burst=1, max_keys=3)
    for key in "abc":
        limits.take(key, 0.0)
    limits.take("a", 0.5)  # used again: now the most recent
    limits.take("d", 0.5)  # full: b, the least recently used, goes
    assert list(limits.buckets) == ["c", "a", "d"]
    assert not limits.take("a", 0.5).allowed  # a kept its state (still empty)
    limits.take("e", 0.5)
    assert list(limits.buckets) == ["d", "a", "e"]  # c went


def test_reservations_queue_each_waiter_behind_the_last() -> None:
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    waits = [bucket.reserve(0.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])  # each sleeps off its own debt
    assert bucket.reserve(0.0, cost=4) == pytest.approx(0.7)  # a batch: all its tokens at once
    refused = bucket.take(0.0)  # plain calls are refused while the debt lasts
    assert not refused.allowed and refused.remaining == 0 and refused.retry_after == pytest.approx(0.8)
    assert bucket.take(0.8).allowed


def test_reservations_admit_the_rate_over_time() -> None:
    bucket = TokenBucket(rate=100, burst=5, now=0.0)
    due = [i / 300 + bucket.reserve(i / 300) for i in range(3000)]  # 300 deliveries/s, 10 s
    assert due == sorted(due)  # first come, first served
    assert sum(1 for t in due if t <= 10.0) == pytest.approx(1000 + 5, abs=1)


def test_delays_are_whole_seconds_rounded_up() -> None:
    assert [whole_seconds(s) for s in (0.0, 0.001, 1.0, 1.2)] == [0, 1, 1, 2]

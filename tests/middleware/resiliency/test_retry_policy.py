"""Retry policies: Dapr's backoff sequences, maxRetries and status matching."""

from __future__ import annotations

import itertools
import random

import pytest

from outrig.middleware.resiliency import ConstantBackoff, ExponentialBackoff, RetryPolicy, StatusCodes


class FixedRandom(random.Random):
    """random() always returns the same value, to pin the jitter."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def first(backoff: ConstantBackoff | ExponentialBackoff, n: int, rng: random.Random) -> list[float]:
    return list(itertools.islice(backoff.delays(rng), n))


def test_constant_waits_its_duration_every_time_without_jitter_by_default() -> None:
    assert first(ConstantBackoff(), 4, random.Random(1)) == [5.0, 5.0, 5.0, 5.0]
    assert first(ConstantBackoff(0.2), 3, random.Random(1)) == [0.2, 0.2, 0.2]


def test_constant_jitter_spreads_waits_within_the_fraction() -> None:
    waits = first(ConstantBackoff(2.0, jitter=0.1), 200, random.Random(7))
    assert all(1.8 <= wait <= 2.2 for wait in waits)
    assert len(set(waits)) == 200  # spread, not one value
    assert first(ConstantBackoff(2.0, jitter=0.1), 2, FixedRandom(0.0)) == [pytest.approx(1.8)] * 2
    assert first(ConstantBackoff(2.0, jitter=0.1), 2, FixedRandom(1.0)) == [pytest.approx(2.2)] * 2


def test_exponential_grows_by_one_and_a_half_from_500ms() -> None:
    # With the jitter pinned at its middle, the waits are the bare intervals.
    assert first(ExponentialBackoff(), 6, FixedRandom(0.5)) == pytest.approx(
        [0.5, 0.75, 1.125, 1.6875, 2.53125, 3.796875]
    )


def test_exponential_jitter_is_plus_or_minus_half() -> None:
    assert first(ExponentialBackoff(), 3, FixedRandom(0.0)) == pytest.approx([0.25, 0.375, 0.5625])
    assert first(ExponentialBackoff(), 3, FixedRandom(1.0)) == pytest.approx([0.75, 1.125, 1.6875])


def test_exponential_with_a_seeded_random_stays_in_band_and_repeats() -> None:
    backoff = ExponentialBackoff(max_interval=15.0)
    waits = first(backoff, 30, random.Random(42))
    assert waits == first(backoff, 30, random.Random(42))  # reproducible from the seed
    assert waits != first(backoff, 30, random.Random(43))
    for n, wait in enumerate(waits):
        interval = min(0.5 * 1.5**n, 15.0)
        assert 0.5 * interval <= wait <= min(1.5 * interval, 15.0)
    assert all(wait <= 15.0 for wait in waits)
    assert max(waits[-10:]) > 10.0  # it does reach the cap region


def test_exponential_never_waits_longer_than_max_interval() -> None:
    waits = first(ExponentialBackoff(max_interval=2.0), 20, FixedRandom(1.0))
    assert waits[:3] == pytest.approx([0.75, 1.125, 1.6875])
    assert waits[3:] == [2.0] * 17


@pytest.mark.parametrize(
    ("retries_done", "max_retries", "allowed"),
    [(0, -1, True), (10_000, -1, True), (0, 0, False), (0, 3, True), (2, 3, True), (3, 3, False)],
)
def test_max_retries(retries_done: int, max_retries: int, allowed: bool) -> None:
    assert RetryPolicy(max_retries=max_retries).allows(retries_done) is allowed


def test_policy_defaults_are_daprs() -> None:
    policy = RetryPolicy()
    assert policy.backoff == ConstantBackoff(5.0)
    assert policy.max_retries == -1
    assert RetryPolicy.exponential().backoff == ExponentialBackoff(0.5, 1.5, 0.5, 60.0)
    assert RetryPolicy.constant(0.2, 3) == RetryPolicy(ConstantBackoff(0.2), 3)


def test_without_matching_5xx_is_retried_and_4xx_is_not() -> None:
    policy = RetryPolicy()
    assert [policy.retries_status(s) for s in (500, 503, 599, 400, 404, 429, 200)] == [
        *[True] * 3,
        *[False] * 4,
    ]


def test_matching_retries_only_the_listed_codes_and_ranges() -> None:
    policy = RetryPolicy(http_status_codes=StatusCodes.http("429, 500-502,504"))
    retried = [status for status in range(100, 600) if policy.retries_status(status)]
    assert retried == [429, 500, 501, 502, 504]


def test_status_codes_parse_like_dapr() -> None:
    assert StatusCodes.http("429,500-599") == StatusCodes(((429, 429), (500, 599)))
    assert StatusCodes.http("500,,503") == StatusCodes(((500, 500), (503, 503)))
    assert StatusCodes.http("") is None  # Dapr: empty means not set
    assert StatusCodes.grpc("1-4,8-11,13,14") == StatusCodes(((1, 4), (8, 11), (13, 13), (14, 14)))
    assert 3 in StatusCodes(((1, 4),)) and 5 not in StatusCodes(((1, 4),))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5xx", "matching.httpStatusCodes: '5xx' is not a code or a range like 100-599"),
        ("500-", "matching.httpStatusCodes: '500-' is not a code or a range like 100-599"),
        ("500-550-599", "matching.httpStatusCodes: '500-550-599' has more than one '-'"),
        ("99", "matching.httpStatusCodes: 99 in '99' is outside 100-599"),
        ("500-600", "matching.httpStatusCodes: 600 in '500-600' is outside 100-599"),
        ("599-500", "matching.httpStatusCodes: '599-500' starts after it ends"),
    ],
)
def test_bad_status_codes_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        StatusCodes.http(text)
    assert str(raised.value) == message


def test_grpc_codes_are_checked_against_their_range() -> None:
    with pytest.raises(ValueError, match=r"matching.gRPCStatusCodes: 17 in '14-17' is outside 0-16"):
        StatusCodes.grpc("14-17")
    assert RetryPolicy(grpc_status_codes=StatusCodes.grpc("14")).retries_grpc(14)
    assert not RetryPolicy(grpc_status_codes=StatusCodes.grpc("14")).retries_grpc(13)
    # Unset: the codes whose HTTP equivalent is a 5xx (UNAVAILABLE yes, NOT_FOUND no).
    assert RetryPolicy().retries_grpc(14) and not RetryPolicy().retries_grpc(5)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ConstantBackoff(-1), "cannot be negative"),
        (lambda: ConstantBackoff(1, jitter=2), "jitter is a fraction"),
        (lambda: ExponentialBackoff(max_interval=0), "must be positive"),
        (lambda: ExponentialBackoff(multiplier=0.5), "at least 1"),
        (lambda: RetryPolicy(max_retries=-2), "maxRetries is -1"),
    ],
)
def test_bad_settings_are_refused(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]

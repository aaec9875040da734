"""Timeout, Retry and Breaker as middleware, alone and composed with tracing."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import time
from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from outrig.middleware import Call, CallError, ErrorMapping, Pipeline, Result, Stream
from outrig.middleware.resiliency import (
    ATTR_RESEND_COUNT,
    ERR_CIRCUIT_OPEN,
    ERR_RESILIENCY_TIMEOUT,
    Breaker,
    CircuitBreaker,
    ExponentialBackoff,
    Retry,
    RetryPolicy,
    State,
    StatusCodes,
    Timeout,
)
from outrig.middleware.tracing import ClientTracing

from .fakes import FakeClock, RecordedSleep, Scripted, make_call, state_of


class Hang:
    """An endpoint that never answers; records that it was cancelled."""

    def __init__(self) -> None:
        self.cancelled = False

    async def __call__(self, call: Call) -> Result:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")


# --- Timeout ---------------------------------------------------------------------------


async def test_timeout_cuts_a_hanging_call_short_with_a_504() -> None:
    endpoint = Hang()
    start = time.monotonic()
    with pytest.raises(CallError) as raised:
        await Pipeline([Timeout(0.05)], endpoint)(make_call())
    assert time.monotonic() - start < 1.0
    assert endpoint.cancelled
    assert (raised.value.code, raised.value.status) == (ERR_RESILIENCY_TIMEOUT, 504)
    assert (
        raised.value.message
        == "invoke to b: no answer within the timeout of 50ms (context deadline exceeded)"
    )


async def test_timeout_passes_a_timely_answer_through() -> None:
    result = await Pipeline([Timeout(1.0)], Scripted([201]))(make_call())
    assert result.status == 201


async def test_timeout_lets_a_timeout_from_below_through_as_it_is() -> None:
    async def endpoint(call: Call) -> Result:
        raise TimeoutError("the transport's own")

    with pytest.raises(TimeoutError, match="the transport's own"):
        await Pipeline([Timeout(1.0)], endpoint)(make_call())


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Timeout(0)


# --- Retry -----------------------------------------------------------------------------


def retry(policy: RetryPolicy | None = None, **options: object) -> tuple[Retry, RecordedSleep]:
    sleep = RecordedSleep()
    return Retry(policy or RetryPolicy(), sleep=sleep, **options), sleep  # type: ignore[arg-type]


async def test_retries_a_5xx_until_it_succeeds_waiting_daprs_5s() -> None:
    endpoint = Scripted([503, 500, 200])
    middleware, sleep = retry()
    result = await Pipeline([middleware], endpoint)(make_call())
    assert (result.status, result.body) == (200, b"attempt 3")
    assert sleep.waits == [5.0, 5.0]


async def test_each_attempt_gets_its_own_copy_and_resends_are_counted() -> None:
    seen: list[dict[str, object]] = []

    async def endpoint(call: Call) -> Result:
        seen.append({"attributes": dict(call.attributes), "marker": call.metadata.get("x-attempt")})
        call.attributes["added.below"] = True  # what a layer below adds stays on its attempt
        call.metadata["x-attempt"] = str(len(seen))
        return Result(503 if len(seen) < 3 else 200)

    original = make_call(attributes={"url.template": "/t"})
    original.metadata["x-app"] = "1"
    middleware, _ = retry()
    assert (await Pipeline([middleware], endpoint)(original)).status == 200
    assert seen == [
        {"attributes": {"url.template": "/t"}, "marker": None},
        {"attributes": {"url.template": "/t", ATTR_RESEND_COUNT: 1}, "marker": None},
        {"attributes": {"url.template": "/t", ATTR_RESEND_COUNT: 2}, "marker": None},
    ]
    assert original.attributes == {"url.template": "/t"}
    assert dict(original.metadata) == {"x-app": "1"}


async def test_max_retries_bounds_the_attempts_and_the_last_failure_is_returned() -> None:
    endpoint = Scripted([503])
    middleware, sleep = retry(RetryPolicy.constant(0.1, max_retries=2))
    result = await Pipeline([middleware], endpoint)(make_call())
    assert (result.status, result.body) == (503, b"attempt 3")
    assert len(endpoint.calls) == 3 and sleep.waits == [0.1, 0.1]


async def test_max_retries_zero_never_retries() -> None:
    endpoint = Scripted([503])
    middleware, _ = retry(RetryPolicy(max_retries=0))
    assert (await Pipeline([middleware], endpoint)(make_call())).status == 503
    assert len(endpoint.calls) == 1


async def test_unbounded_retries_go_on_until_success() -> None:
    endpoint = Scripted([*[503] * 19, 200])
    middleware, sleep = retry(RetryPolicy.constant(0.0))
    assert (await Pipeline([middleware], endpoint)(make_call())).status == 200
    assert len(endpoint.calls) == 20 and len(sleep.waits) == 19


@pytest.mark.parametrize(
    ("matching", "statuses", "attempts"),
    [
        (None, [400, 200], 1),  # a 4xx is the caller's: not retried
        (None, [404, 200], 1),
        (None, [503, 200], 2),
        ("429,500-599", [429, 200], 2),
        ("429,500-599", [503, 200], 2),
        ("429,500-599", [400, 200], 1),
        ("500-502", [503, 200], 1),  # listed codes only
        ("500-502", [502, 200], 2),
    ],
)
async def test_status_matching(matching: str | None, statuses: list[int], attempts: int) -> None:
    endpoint = Scripted(statuses)
    policy = RetryPolicy.constant(0.0, http_status_codes=StatusCodes.http(matching) if matching else None)
    middleware, _ = retry(policy)
    result = await Pipeline([middleware], endpoint)(make_call())
    assert len(endpoint.calls) == attempts
    assert result.status == statuses[attempts - 1]


async def test_raised_5xx_errors_are_retried_and_4xx_or_permanent_ones_are_not() -> None:
    transport = CallError("ERR_DIRECT_INVOKE", "connection refused", 500)
    endpoint = Scripted([transport, transport, 200])
    middleware, _ = retry(RetryPolicy.constant(0.0))
    assert (await Pipeline([middleware], endpoint)(make_call())).status == 200
    assert len(endpoint.calls) == 3

    for error in (
        CallError("ERR_MALFORMED_REQUEST", "bad", 400),
        CallError("ERR_X", "no", 503, permanent=True),
    ):
        endpoint = Scripted([error, 200])
        with pytest.raises(CallError) as raised:
            await Pipeline([middleware], endpoint)(make_call())
        assert raised.value is error
        assert len(endpoint.calls) == 1


async def test_the_last_raised_error_is_raised_when_retries_run_out() -> None:
    errors = [CallError("ERR_DIRECT_INVOKE", f"failure {n}", 500) for n in range(3)]
    middleware, _ = retry(RetryPolicy.constant(0.0, max_retries=2))
    with pytest.raises(CallError) as raised:
        await Pipeline([middleware], Scripted(errors))(make_call())
    assert raised.value is errors[2]


async def test_other_exceptions_are_bugs_and_are_not_retried() -> None:
    calls = 0

    async def endpoint(call: Call) -> Result:
        nonlocal calls
        calls += 1
        raise KeyError("bug")

    middleware, _ = retry(RetryPolicy.constant(0.0))
    with pytest.raises(KeyError):
        await Pipeline([middleware], endpoint)(make_call())
    assert calls == 1


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_streamed_request_body_is_tried_once() -> None:
    endpoint = Scripted([503, 200])
    middleware, sleep = retry(RetryPolicy.constant(0.0))
    call = make_call(body=Stream(_chunks(b"a", b"b")))
    assert (await Pipeline([middleware], endpoint)(call)).status == 503
    assert len(endpoint.calls) == 1 and sleep.waits == []
    # The same failure with a bytes body is retried: it is the stream that prevents it.
    assert (await Pipeline([middleware], Scripted([503, 200]))(make_call(body=b"ab"))).status == 200


async def test_the_streamed_response_of_a_failed_attempt_is_closed_before_retrying() -> None:
    closed: list[int] = []

    class Body:
        def __init__(self, n: int) -> None:
            self.n = n

        def __aiter__(self) -> AsyncIterator[bytes]:
            return _chunks(b"error")

        async def aclose(self) -> None:
            closed.append(self.n)

    attempts = 0

    async def endpoint(call: Call) -> Result:
        nonlocal attempts
        attempts += 1
        return Result(503 if attempts < 3 else 200, body=Stream(Body(attempts)))

    middleware, _ = retry(RetryPolicy.constant(0.0))
    result = await Pipeline([middleware], endpoint)(make_call())
    assert result.status == 200
    assert closed == [1, 2]  # the failed attempts' bodies, not the one returned


async def test_exponential_waits_come_from_the_seeded_random() -> None:
    middleware, sleep = retry(RetryPolicy.exponential(max_retries=5), rng=random.Random(3))
    await Pipeline([middleware], Scripted([503]))(make_call())
    expected = list(itertools.islice(ExponentialBackoff().delays(random.Random(3)), 5))
    assert sleep.waits == expected
    assert len(set(sleep.waits)) == 5 and sleep.waits != [0.5, 0.75, 1.125, 1.6875, 2.53125]  # jittered


async def test_a_wait_past_the_deadline_is_not_made() -> None:
    endpoint = Scripted([503, 200])
    middleware, sleep = retry(RetryPolicy.constant(5.0), deadline=1.0)
    start = time.monotonic()
    result = await Pipeline([middleware], endpoint)(make_call())
    assert result.status == 503 and len(endpoint.calls) == 1 and sleep.waits == []
    assert time.monotonic() - start < 0.5


async def test_the_deadline_covers_all_attempts_and_waits() -> None:
    endpoint = Scripted([503])
    middleware = Retry(RetryPolicy.constant(0.08), deadline=0.3)  # real sleeps
    start = time.monotonic()
    result = await Pipeline([middleware], endpoint)(make_call())
    elapsed = time.monotonic() - start
    assert result.status == 503  # the last failure, returned before the deadline
    assert 2 <= len(endpoint.calls) <= 4  # 3 unless the machine is very slow: at 0, 80 and 160 ms
    assert elapsed < 0.3


async def test_an_attempt_running_at_the_deadline_ends_with_a_504() -> None:
    endpoint = Hang()
    middleware, _ = retry(RetryPolicy.constant(0.0), deadline=0.05)
    with pytest.raises(CallError) as raised:
        await Pipeline([middleware], endpoint)(make_call())
    assert endpoint.cancelled
    assert (raised.value.code, raised.value.status) == (ERR_RESILIENCY_TIMEOUT, 504)
    assert "within the retry deadline of 50ms (1 attempt; context deadline exceeded)" in raised.value.message


def test_a_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Retry(RetryPolicy(), deadline=0)


# --- Breaker ---------------------------------------------------------------------------


async def test_breaker_opens_on_5xx_results_and_raised_errors_then_fails_fast() -> None:
    breaker = CircuitBreaker("b", trip="consecutiveFailures >= 3", clock=FakeClock())
    error = CallError("ERR_DIRECT_INVOKE", "refused", 500)
    endpoint = Scripted([503, error, 500, 200])
    pipeline = Pipeline([Breaker(breaker)], endpoint)
    assert (await pipeline(make_call())).status == 503
    with pytest.raises(CallError):
        await pipeline(make_call())
    assert (await pipeline(make_call())).status == 500
    assert state_of(breaker) is State.OPEN
    with pytest.raises(CallError) as raised:
        await pipeline(make_call())
    assert (raised.value.code, raised.value.status) == (ERR_CIRCUIT_OPEN, 503)
    assert raised.value.details == {"permanent": True, "retry_after": 60.0}
    assert raised.value.message == "invoke to b: circuit breaker 'b' is open; it lets a probe through in 1m"
    assert len(endpoint.calls) == 3  # the refused call never reached the endpoint


async def test_breaker_ignores_4xx() -> None:
    breaker = CircuitBreaker("b", trip="consecutiveFailures >= 1", clock=FakeClock())
    pipeline = Pipeline([Breaker(breaker)], Scripted([404, 400, 429]))
    for _ in range(3):
        await pipeline(make_call())
    assert state_of(breaker) is State.CLOSED
    assert breaker.counts.total_successes == 3


async def test_breaker_counts_unexpected_exceptions_as_failures() -> None:
    async def endpoint(call: Call) -> Result:
        raise OSError("network down")

    breaker = CircuitBreaker("b", trip="consecutiveFailures >= 1", clock=FakeClock())
    with pytest.raises(OSError):
        await Pipeline([Breaker(breaker)], endpoint)(make_call())
    assert state_of(breaker) is State.OPEN


async def test_a_cancelled_probe_is_released_not_counted() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("b", trip="consecutiveFailures >= 1", clock=clock)
    breaker.record(breaker.acquire(), success=False)
    clock.advance(60)
    task = asyncio.create_task(Pipeline([Breaker(breaker)], Hang())(make_call()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state_of(breaker) is State.HALF_OPEN
    assert (await Pipeline([Breaker(breaker)], Scripted([200]))(make_call())).status == 200
    assert state_of(breaker) is State.CLOSED


# --- Composition -----------------------------------------------------------------------


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_each_attempt_has_its_own_client_span_with_its_resend_count(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")
    hang, later = Hang(), Scripted([503, 200])
    traceparents: list[str] = []

    async def endpoint(call: Call) -> Result:
        traceparents.append(call.metadata["traceparent"])
        if len(traceparents) == 1:
            return await hang(call)
        return await later(call)

    breaker = CircuitBreaker("b", clock=FakeClock())
    sleep = RecordedSleep()
    pipeline = Pipeline(
        [
            ErrorMapping(),
            Retry(RetryPolicy(), sleep=sleep),
            Breaker(breaker),
            ClientTracing(tracer),
            Timeout(0.05),
        ],
        endpoint,
    )
    call = make_call()
    with tracer.start_as_current_span("caller"):
        result = await pipeline(call)

    assert result.status == 200
    assert sleep.waits == [5.0, 5.0]
    client = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.CLIENT]
    assert [span.attributes.get(ATTR_RESEND_COUNT) for span in client] == [None, 1, 2]  # type: ignore[union-attr]
    assert [span.attributes["http.response.status_code"] for span in client] == [504, 503, 200]  # type: ignore[index]
    assert client[0].attributes["error.type"] == ERR_RESILIENCY_TIMEOUT  # type: ignore[index]
    caller = next(span for span in exporter.get_finished_spans() if span.name == "caller")
    assert all(span.parent is not None and span.parent.span_id == caller.context.span_id for span in client)
    # Each attempt propagated its own span; the caller's call was left as it was.
    assert len(set(traceparents)) == 3
    assert [f"{span.context.span_id:016x}" for span in client] == [tp.split("-")[2] for tp in traceparents]
    assert "traceparent" not in call.metadata
    assert breaker.counts.total_failures == 2 and breaker.counts.total_successes == 1


async def test_the_breaker_counts_each_attempt_and_its_refusal_stops_the_retries(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    breaker = CircuitBreaker("b", trip="consecutiveFailures >= 2", clock=FakeClock())
    endpoint = Scripted([503])
    sleep = RecordedSleep()
    pipeline = Pipeline(
        [
            ErrorMapping(),
            Retry(RetryPolicy.constant(0.5), sleep=sleep),
            Breaker(breaker),
            ClientTracing(provider.get_tracer("t")),
        ],
        endpoint,
    )
    result = await pipeline(make_call())
    assert result.status == 503
    assert result.error is not None and result.error.code == ERR_CIRCUIT_OPEN
    assert len(endpoint.calls) == 2  # two attempts tripped it; the third was refused, not retried
    assert sleep.waits == [0.5, 0.5]
    assert len(exporter.get_finished_spans()) == 2  # no CLIENT span for the call never sent


async def test_an_attempt_copies_every_field_of_the_call() -> None:
    endpoint = Scripted([503, 200])
    original = make_call(
        body=b"payload", verb="PUT", query="a=1", caller="a", request={"k": 1}, links=[{"traceparent": "x"}]
    )
    original.metadata["x-app"] = "1"
    middleware, _ = retry(RetryPolicy.constant(0.0))
    await Pipeline([middleware], endpoint)(original)
    for attempt in endpoint.calls:
        for field in dataclasses.fields(Call):
            copied, given = getattr(attempt, field.name), getattr(original, field.name)
            if field.name == "attributes":
                assert {k: v for k, v in copied.items() if k != ATTR_RESEND_COUNT} == given
            else:
                assert copied == given, field.name
            if field.name in ("metadata", "attributes", "links"):
                assert copied is not given, field.name

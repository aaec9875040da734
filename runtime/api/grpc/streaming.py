"""SubscribeTopicEventsAlpha1: Dapr's streaming subscription, a bidirectional stream.

The client's first message is the `initial_request` (pubsub, topic, metadata, dead-letter
topic); the sidecar subscribes (a `STREAMING` subscription of its `Messaging`, listed in
the metadata like the others), answers `initial_response`, then sends each event as an
`event_message` and waits for the client's `event_processed` (SUCCESS, RETRY, DROP) for
that event id. Events pass the same delivery pipeline as deliveries to the app (metrics,
error mapping, the CONSUMER span continuing the publisher's trace; the event's
`traceparent` extension is that span, so the client's work continues the trace) and the
same at-least-once rules: SUCCESS and DROP acknowledge, RETRY delivers again later (or to
the dead-letter topic), an event unanswered while the stream is open stays with the
stream, as in Dapr; when the stream ends the subscription ends and every unanswered event
goes back to the broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from dapr.proto.runtime.v1 import appcallback_pb2, pubsub_pb2
from opentelemetry import propagate, trace

from outrig.middleware import Call, CallError, Next, Result

from ...appchannel_grpc import topic_event
from ...blocks.delivery import Outcome
from ...blocks.subscriptions import Subscription
from .calls import Context
from .pubsub import check_names
from .wire import text_map

log = logging.getLogger("outrig.grpc")

STREAMING = "STREAMING"
Request = pubsub_pb2.SubscribeTopicEventsRequestAlpha1
Response = pubsub_pb2.SubscribeTopicEventsResponseAlpha1
StreamRpc = Callable[[AsyncIterator[Any], Context], AsyncIterator[Any]]
_STATUS = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus


class StreamHost(Protocol):
    """What a stream needs from the sidecar: its `Messaging`."""

    async def stream(
        self, subscription: Subscription, endpoint: Next, release: Callable[[], None]
    ) -> Callable[[], Awaitable[None]]: ...


class EventStream:
    """The delivery pipeline's endpoint for one open stream: each event goes out as an
    `event_message`; the delivery waits for the client's answer to it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.outgoing: asyncio.Queue[Response | None] = asyncio.Queue()
        self._waiting: dict[str, list[asyncio.Future[Outcome | None]]] = {}
        """Events sent, by id, waiting for their answer (None: the stream ended first)."""
        self.closed = False

    async def __call__(self, call: Call) -> Result:
        if self.closed:
            return Result(503, value=Outcome.RETRY)
        event = json.loads(await call.read())
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the CONSUMER span: the client's work continues it
        message = topic_event({**event, **carrier}, "")
        answer: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(message.id, [])
        waiting.append(answer)
        try:
            await self.outgoing.put(Response(event_message=message))
            answered = await answer
        finally:
            waiting.remove(answer)
            if not waiting:
                self._waiting.pop(message.id, None)
        verdict = Outcome.RETRY if answered is None else answered
        trace.get_current_span().set_attribute("outrig.pubsub.outcome", verdict.value)
        return Result(503 if answered is None else 200, value=verdict)

    def answer(self, processed: pubsub_pb2.SubscribeTopicEventsRequestProcessedAlpha1) -> None:
        """The client's verdict on an event it was sent (the oldest one with that id)."""
        pending = [f for f in self._waiting.get(processed.id, ()) if not f.done()]
        if not pending:
            log.warning("%s: the client answered event %r, which is not waiting for an answer; ignored",
                        self.name, processed.id)  # fmt: skip
            return
        status = processed.status.status
        try:
            verdict = Outcome(_STATUS.Name(status))
        except ValueError:
            log.warning("%s: unknown status %d for event %s; it will be delivered again",
                        self.name, status, processed.id)  # fmt: skip
            verdict = Outcome.RETRY
        pending[0].set_result(verdict)

    def close(self) -> None:
        """No more events: every unanswered one is a RETRY (back to the broker)."""
        if self.closed:
            return
        self.closed = True
        for waiting in self._waiting.values():
            for future in waiting:
                if not future.done():
                    future.set_result(None)
        self.outgoing.put_nowait(None)


def subscription_of(request: Any) -> Subscription:
    """The subscription a stream's first message asks for; CallError when it is not an
    `initial_request` or names no pubsub or topic."""
    if request is None or request.WhichOneof("subscribe_topic_events_request_type") != "initial_request":
        message = "the first message of SubscribeTopicEventsAlpha1 must be initial_request (pubsub and topic)"
        raise CallError("ERR_BAD_REQUEST", message, 400, field_violations=[("initial_request", message)])
    initial: pubsub_pb2.SubscribeTopicEventsRequestInitialAlpha1 = request.initial_request
    check_names(initial.pubsub_name, initial.topic)
    return Subscription(
        pubsub=initial.pubsub_name,
        topic=initial.topic,
        default_path="",
        dead_letter_topic=initial.dead_letter_topic or None,
        metadata=text_map(initial.metadata),
        kind=STREAMING,
    )


class StreamingRpcs:
    def __init__(self, host: StreamHost) -> None:
        self.host = host

    def rpcs(self) -> dict[str, StreamRpc]:
        return {"SubscribeTopicEventsAlpha1": self.subscribe_topic_events}

    async def subscribe_topic_events(
        self, requests: AsyncIterator[Request], context: Context
    ) -> AsyncIterator[Response]:
        try:
            first = await anext(aiter(requests), None)
        except StopAsyncIteration:  # pragma: no cover - anext's default covers it
            first = None
        subscription = subscription_of(first)
        stream = EventStream(f"stream {subscription.pubsub}/{subscription.topic}")
        try:
            unsubscribe = await self.host.stream(subscription, stream, stream.close)
        except CallError as error:
            raise error.located("pubsub", subscription.pubsub) from None
        reader = asyncio.create_task(self._read(requests, stream))
        try:
            yield Response(initial_response=pubsub_pb2.SubscribeTopicEventsResponseInitialAlpha1())
            while (message := await stream.outgoing.get()) is not None:
                yield message
        finally:
            reader.cancel()
            await unsubscribe()

    async def _read(self, requests: AsyncIterator[Request], stream: EventStream) -> None:
        """The client's answers, until it half-closes or the stream ends."""
        try:
            async for request in requests:
                kind = request.WhichOneof("subscribe_topic_events_request_type")
                if kind == "event_processed":
                    stream.answer(request.event_processed)
                else:
                    log.warning("%s: a second %s on an open stream; ignored", stream.name, kind)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client went away mid-read
            log.debug("%s: reading the stream ended: %s", stream.name, exc)
        stream.close()

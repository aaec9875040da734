"""Delivering a topic's messages to the app, as Dapr does, through the pipeline.

Each message becomes a `deliver` call through the delivery pipeline (error mapping, a
CONSUMER span `process {topic}` continuing the publisher's trace, then the app channel
with its own CLIENT span), POSTed to the route its subscription picks. The app's answer
decides (Dapr's rules): `{"status": "SUCCESS"}`, an empty or non-JSON 2xx body, or a 2xx
without a status -> done; `DROP` or HTTP 404 -> done, with a warning; `RETRY`, an unknown
status, any other HTTP status, or no answer -> the message is sent to the subscription's
dead-letter topic if it has one, else delivered again after the component's
`processingTimeout`. Expired events (`ttlInSeconds`) and events no route matches are
dropped before the app sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from outrig.middleware import Call, CallError, Hop, Next, Pipeline, Result

from ..components.pubsub import Message
from . import cloudevents
from .pubsub import Outgoing, PubSubEntry, send, trace_carrier
from .subscriptions import Subscription

log = logging.getLogger("outrig.pubsub")

EXPIRED, UNROUTED, DEAD_LETTER = "EXPIRED", "UNROUTED", "DEAD_LETTER"
"""Outcomes decided by the sidecar rather than the app (for metrics and logs)."""
ANSWER_LIMIT = 64 * 1024
"""How much of the app's answer is read to find its status."""


class Outcome(enum.StrEnum):
    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


def bulk_outcomes(status: int, body: bytes, entry_ids: Sequence[str]) -> dict[str, Outcome]:
    """What the app's answer to a batch means for each entry: its `statuses` list
    (`[{entryId, status}]`); an entry it leaves out is RETRY, as in Dapr; HTTP 404 drops
    the batch, any other failure retries it."""
    if status == 404:
        return dict.fromkeys(entry_ids, Outcome.DROP)
    verdicts = dict.fromkeys(entry_ids, Outcome.RETRY)
    if not 200 <= status < 300:
        return verdicts
    try:
        statuses = json.loads(body).get("statuses")
    except (ValueError, AttributeError):
        return verdicts
    for item in statuses if isinstance(statuses, list) else []:
        entry_id = item.get("entryId") if isinstance(item, dict) else None
        if entry_id in verdicts:
            with contextlib.suppress(ValueError):  # an unknown status stays RETRY
                verdicts[entry_id] = Outcome(str(item.get("status", "")).upper())
    return verdicts


def outcome(status: int, body: bytes) -> Outcome:
    """What the app's HTTP answer to a delivery means (see the module docstring)."""
    if status == 404:
        return Outcome.DROP
    if not 200 <= status < 300:
        return Outcome.RETRY
    try:
        answer = json.loads(body) if body.strip() else None
    except ValueError:
        return Outcome.SUCCESS
    value = answer.get("status") if isinstance(answer, dict) else None
    if value is None or value == "":
        return Outcome.SUCCESS
    try:
        return Outcome(str(value).upper())
    except ValueError:
        return Outcome.RETRY


def post_to_app(call: Call) -> Call:
    """The app-channel call that hands a delivery to the app: POST to its route (which is
    also the span's URL template), with the delivery's headers and body."""
    return Call(
        block=call.block, operation=call.operation, target=call.target, subject=call.route.lstrip("/"),
        hop=Hop.APP_CHANNEL, route=call.route, metadata=call.metadata, body=call.body, verb="POST",
        attributes={"url.template": call.route},
    )  # fmt: skip


class AppDelivery:
    """The end of the delivery pipeline: POST the event to the app, read its verdict."""

    def __init__(self, app: Pipeline) -> None:
        self.app = app

    async def __call__(self, call: Call) -> Result:
        result = await self.app(post_to_app(call))
        body = b""
        if result.error is None:
            body = await _read_some(result)
        if call.operation == "deliver_bulk":
            verdicts = bulk_outcomes(result.status, body, call.request)
            counts = Counter(v.value for v in verdicts.values())
            trace.get_current_span().set_attribute(
                "outrig.pubsub.outcome", ",".join(f"{k}={n}" for k, n in sorted(counts.items()))
            )
            return Result(result.status, value=verdicts, error=result.error)
        verdict = outcome(result.status, body)
        trace.get_current_span().set_attribute("outrig.pubsub.outcome", verdict.value)
        return Result(result.status, value=verdict, error=result.error)


async def _read_some(result: Result) -> bytes:
    if isinstance(result.body, bytes):
        return result.body[:ANSWER_LIMIT]
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in result.body:
            parts.append(chunk)
            size += len(chunk)
            if size >= ANSWER_LIMIT:
                break
    finally:
        await result.body.aclose()
    return b"".join(parts)[:ANSWER_LIMIT]


@dataclass
class _Batch:
    """Events waiting to go to one route together, each with the future of its verdict."""

    events: dict[str, tuple[Mapping[str, Any], Mapping[str, str]]] = field(default_factory=dict)
    verdicts: dict[str, asyncio.Future[Outcome]] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


class Delivery:
    """One subscription's handler: called by the component for each message. With
    `bulkSubscribe`, events for one route are gathered (up to `maxMessagesCount`, for at
    most `maxAwaitDurationMs`) and sent in one request; each gets its own verdict."""

    def __init__(
        self,
        subscription: Subscription,
        entry: PubSubEntry,
        pipeline: Pipeline,
        group: str,
        record: Callable[[str, bool], None] | None = None,
        resiliency: Callable[[Next], Next] | None = None,
    ) -> None:
        self.record = record
        self.attempt: Next = resiliency(self._attempt) if resiliency is not None else self._attempt
        """One delivery through the pipeline; wrapped in the pubsub's inbound resiliency
        policy when it has one (retries, where a RETRY answer counts as a failure)."""
        """Told each event's outcome (SUCCESS, RETRY, DROP, EXPIRED, UNROUTED, DEAD_LETTER)
        and whether it was a redelivery, for metrics."""
        self.subscription = subscription
        self.entry = entry
        self.pipeline = pipeline
        self.group = group
        self.name = f"{entry.name}/{subscription.topic}"
        self._batches: dict[str, _Batch] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self.closing = False
        """Set while the subscription closes: a RETRY then goes back to the broker, not to
        the dead-letter topic (the consumer left; the event did not fail)."""

    async def __call__(self, message: Message) -> bool:
        # Logs about this message carry the publisher's trace.
        token = otel_context.attach(propagate.extract(dict(message.metadata)))
        try:
            outcome = await self._handle(message)
        finally:
            otel_context.detach(token)
        if self.record is not None:
            self.record(outcome, message.redelivered)
        return outcome != Outcome.RETRY

    async def _handle(self, message: Message) -> str:
        """The event's outcome; RETRY means: deliver it again later."""
        sub = self.subscription
        event = cloudevents.read(
            message.data, topic=sub.topic, pubsub=sub.pubsub, raw=sub.raw_payload, message_id=message.id
        )
        if cloudevents.expired(event):
            log.info("%s: event %s expired before delivery; dropped", self.name, event.get("id"))
            return EXPIRED
        path = sub.route(event)
        if path is None:
            log.warning("%s: no route matches event %s and there is no default; dropped",
                        self.name, event.get("id"))  # fmt: skip
            return UNROUTED
        if sub.bulk is None:
            verdict = await self._deliver(event, path, message.metadata)
        else:
            verdict = await self._gather(message.id, event, path, message.metadata)
        if verdict is not Outcome.RETRY:
            if verdict is Outcome.DROP:
                log.warning("%s: the app dropped event %s", self.name, event.get("id"))
            return verdict.value
        if sub.dead_letter_topic and not self.closing and await self._dead_letter(message, event):
            return DEAD_LETTER
        return Outcome.RETRY.value

    def _attributes(self) -> dict[str, Any]:
        return {
            **self.entry.component.span_attributes,
            "messaging.destination.name": self.subscription.topic,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.consumer.group.name": self.group,
        }

    def _headers(self, content_type: str) -> CIMultiDict[str]:
        return CIMultiDict({"content-type": content_type, "pubsubname": self.subscription.pubsub})

    async def _deliver(self, event: Mapping[str, Any], path: str, metadata: Mapping[str, str]) -> Outcome:
        headers = self._headers(cloudevents.CLOUDEVENT_CONTENT_TYPE)
        headers.update(trace_carrier(event, metadata))
        attributes = self._attributes()
        if isinstance(event.get("id"), str):
            attributes["messaging.message.id"] = event["id"]
        call = Call(
            block="pubsub", operation="deliver", target=self.entry.name, subject=self.subscription.topic,
            hop=Hop.COMPONENT, route=path, metadata=headers, body=json.dumps(event).encode(), verb="POST",
            attributes=attributes,
        )  # fmt: skip
        try:
            result = await self.attempt(call)
        except CallError as error:  # a timeout, an open breaker: not delivered
            log.warning("%s: delivery of event %s failed: %s", self.name, event.get("id"), error.message)
            return Outcome.RETRY
        if result.error is not None:
            log.warning(
                "%s: delivery of event %s failed: %s", self.name, event.get("id"), result.error.message
            )
            return Outcome.RETRY
        verdict: Outcome = result.value
        return verdict

    async def _attempt(self, call: Call) -> Result:
        """One attempt; an app's RETRY is a 500 here, so retry policies treat it as a failure."""
        result = await self.pipeline(call)
        if result.error is None and result.value is Outcome.RETRY:
            return Result(500, value=Outcome.RETRY)
        return result

    async def _gather(
        self, entry_id: str, event: Mapping[str, Any], path: str, metadata: Mapping[str, str]
    ) -> Outcome:
        settings = self.subscription.bulk
        assert settings is not None
        batch = self._batches.get(path)
        if batch is None:
            batch = self._batches[path] = _Batch()
            batch.timer = asyncio.get_running_loop().call_later(settings.max_await_seconds, self._flush, path)
        batch.events[entry_id] = (event, metadata)
        verdict: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        batch.verdicts[entry_id] = verdict
        if len(batch.events) >= settings.max_messages:
            self._flush(path)
        return await verdict

    def _flush(self, path: str) -> None:
        batch = self._batches.pop(path, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.create_task(self._deliver_batch(batch, path))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver_batch(self, batch: _Batch, path: str) -> None:
        """One request for the whole batch: a CONSUMER span linked to each event's publisher
        (the messaging conventions for a batch), and a verdict per entry."""
        sub = self.subscription
        envelope = {
            "id": str(uuid.uuid4()),
            "entries": [
                {"entryId": entry_id, "event": event, "contentType": cloudevents.CLOUDEVENT_CONTENT_TYPE,
                 "metadata": dict(metadata)}
                for entry_id, (event, metadata) in batch.events.items()
            ],
            "metadata": {},
            "pubsubname": sub.pubsub,
            "topic": sub.topic,
            "type": "com.dapr.event.sent.bulk",
        }  # fmt: skip
        attributes = {**self._attributes(), "messaging.batch.message_count": len(batch.events)}
        call = Call(
            block="pubsub", operation="deliver_bulk", target=self.entry.name, subject=sub.topic,
            hop=Hop.COMPONENT, route=path, metadata=self._headers("application/json"),
            body=json.dumps(envelope).encode(), verb="POST", request=list(batch.events),
            attributes=attributes, links=[trace_carrier(e, m) for e, m in batch.events.values()],
        )  # fmt: skip
        verdicts: dict[str, Outcome] = {}
        try:
            result = await self.pipeline(call)
            if result.error is not None:
                log.warning("%s: delivery of a batch of %d failed: %s",
                            self.name, len(batch.events), result.error.message)  # fmt: skip
            else:
                verdicts = result.value
        finally:
            for entry_id, future in batch.verdicts.items():
                if not future.done():
                    future.set_result(verdicts.get(entry_id, Outcome.RETRY))

    async def _dead_letter(self, message: Message, event: Mapping[str, Any]) -> bool:
        topic = self.subscription.dead_letter_topic
        assert topic is not None
        outgoing = Outgoing("", None, message.data, message.metadata)
        failures = await send(self.entry, topic, outgoing=[outgoing], metadata=CIMultiDict())
        if failures:
            log.warning("%s: cannot move event %s to dead-letter topic %s: %s; it will be delivered again",
                        self.name, event.get("id"), topic, failures[0].error)  # fmt: skip
            return False
        log.info("%s: event %s moved to dead-letter topic %s", self.name, event.get("id"), topic)
        return True

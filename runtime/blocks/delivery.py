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

import enum
import json
import logging
from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict
from opentelemetry import trace

from outrig.middleware import Call, Hop, Pipeline, Result

from ..components.pubsub import Message
from . import cloudevents
from .pubsub import TRACE_KEYS, Outgoing, PubSubEntry, send
from .subscriptions import Subscription

log = logging.getLogger("outrig.pubsub")

ANSWER_LIMIT = 64 * 1024
"""How much of the app's answer is read to find its status."""


class Outcome(enum.StrEnum):
    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


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


class AppDelivery:
    """The end of the delivery pipeline: POST the event to the app, read its verdict."""

    def __init__(self, app: Pipeline) -> None:
        self.app = app

    async def __call__(self, call: Call) -> Result:
        outbound = Call(
            block=call.block, operation=call.operation, target=call.target, subject=call.route.lstrip("/"),
            hop=Hop.APP_CHANNEL, route=call.route, metadata=call.metadata, body=call.body, verb="POST",
            attributes={"url.template": call.route},
        )  # fmt: skip
        result = await self.app(outbound)
        body = b""
        if result.error is None:
            body = await _read_some(result)
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


class Delivery:
    """One subscription's handler: called by the component for each message."""

    def __init__(
        self, subscription: Subscription, entry: PubSubEntry, pipeline: Pipeline, group: str
    ) -> None:
        self.subscription = subscription
        self.entry = entry
        self.pipeline = pipeline
        self.group = group
        self.name = f"{entry.name}/{subscription.topic}"

    async def __call__(self, message: Message) -> bool:
        sub = self.subscription
        event = cloudevents.read(
            message.data, topic=sub.topic, pubsub=sub.pubsub, raw=sub.raw_payload, message_id=message.id
        )
        if cloudevents.expired(event):
            log.info("%s: event %s expired before delivery; dropped", self.name, event.get("id"))
            return True
        path = sub.route(event)
        if path is None:
            log.warning("%s: no route matches event %s and there is no default; dropped",
                        self.name, event.get("id"))  # fmt: skip
            return True
        verdict = await self._deliver(event, path, message.metadata)
        if verdict is not Outcome.RETRY:
            if verdict is Outcome.DROP:
                log.warning("%s: the app dropped event %s", self.name, event.get("id"))
            return True
        if sub.dead_letter_topic:
            return await self._dead_letter(message, event)
        return False

    async def _deliver(self, event: Mapping[str, Any], path: str, metadata: Mapping[str, str]) -> Outcome:
        headers: CIMultiDict[str] = CIMultiDict(
            {"content-type": cloudevents.CLOUDEVENT_CONTENT_TYPE, "pubsubname": self.subscription.pubsub}
        )
        for key in TRACE_KEYS:
            value = event.get(key) or metadata.get(key)
            if isinstance(value, str) and value:
                headers[key] = value
        attributes: dict[str, Any] = {
            **self.entry.component.span_attributes,
            "messaging.destination.name": self.subscription.topic,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.consumer.group.name": self.group,
        }
        if isinstance(event.get("id"), str):
            attributes["messaging.message.id"] = event["id"]
        call = Call(
            block="pubsub", operation="deliver", target=self.entry.name, subject=self.subscription.topic,
            hop=Hop.COMPONENT, route=path, metadata=headers, body=json.dumps(event).encode(), verb="POST",
            attributes=attributes,
        )  # fmt: skip
        result = await self.pipeline(call)
        if result.error is not None:
            log.warning(
                "%s: delivery of event %s failed: %s", self.name, event.get("id"), result.error.message
            )
            return Outcome.RETRY
        verdict: Outcome = result.value
        return verdict

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

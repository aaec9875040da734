"""Dapr's transactional outbox: a committed state transaction publishes its items, a failed
one publishes nothing, and a crash in between loses nothing.

A state store with `outboxPublishPubsub` and `outboxPublishTopic` metadata gets an
`Outbox`. For each transaction, before running it, the outbox publishes one internal
message (topic `{app-id}-outbox-{store}` on the `outboxPubsub`, by default the same
pubsub) listing the items, and adds a marker key to the transaction itself. The marker
and the items commit together or not at all. The outbox's own subscriber then publishes
the items to the user's topic only if the marker exists, and removes it:
- committed: the marker is there, the items are published (at least once: the internal
  message is only acknowledged after they are);
- failed (an etag conflict, a store error): no marker; the sidecar that saw the failure
  drops the message at once; any other waits `OUTBOX_GRACE` for a commit that may still
  be under way, then drops it;
- the sidecar died between the publish and the commit: the marker decides, as above.

Each item is published as a CloudEvent whose data is the saved value and whose `subject`
is the state key (deletes publish nothing), as Dapr's outbox does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict
from opentelemetry import context as otel_context
from opentelemetry import propagate

from outrig.middleware import CallError

from ..components.pubsub import Message
from ..components.state import Delete, Operation, StateError, Upsert
from . import cloudevents
from .pubsub import Outgoing, PubSubEntry, send

if TYPE_CHECKING:
    from .state import StoreEntry

log = logging.getLogger("outrig.outbox")

OUTBOX_GRACE = 10.0
"""How long a marker may take to appear after its message was published, before the
transaction is taken for failed (a commit normally follows within milliseconds)."""
MARKER_POLL = 0.05
MARKER_TTL = 24 * 3600
"""Markers expire on their own if their subscriber never gets to remove them."""
FAILED_MEMORY = 10_000


class Outbox:
    def __init__(
        self, app_id: str, store: StoreEntry, internal: PubSubEntry, target: PubSubEntry, topic: str
    ) -> None:
        self.store = store
        self.internal = internal
        self.target = target
        self.topic = topic
        self.internal_topic = f"{app_id}-outbox-{store.name}"
        self.source = app_id
        self._failed: dict[str, None] = {}

    async def prepare(
        self, operations: Sequence[Operation], metadata: CIMultiDict[str]
    ) -> tuple[str, Upsert]:
        """Publish the internal message for a transaction; the marker upsert to add to it."""
        marker = self.store.full_key(f"outbox-{uuid.uuid4()}")
        items = [
            {"key": op.key[len(self.store.stored_prefix) :], "value": base64.b64encode(op.value).decode()}
            for op in operations
            if isinstance(op, Upsert)
        ]
        body = json.dumps({"marker": marker, "published": time.time(), "items": items}).encode()
        failures = await send(self.internal, self.internal_topic, [Outgoing("", None, body, {})], metadata)
        if failures:
            raise CallError(
                "ERR_PUBLISH_OUTBOX", f"error while publishing outbox message: {failures[0].error}", 500
            )
        return marker, Upsert(marker, b'"outbox"', ttl_seconds=MARKER_TTL)

    def failed(self, marker: str) -> None:
        """The transaction carrying `marker` did not commit: drop its message on sight."""
        self._failed[marker] = None
        while len(self._failed) > FAILED_MEMORY:
            self._failed.pop(next(iter(self._failed)))

    async def __call__(self, message: Message) -> bool:
        """The internal subscriber: publish a committed transaction's items, then forget it."""
        try:
            note = json.loads(message.data)
            marker, published, items = note["marker"], float(note["published"]), note["items"]
        except (ValueError, KeyError, TypeError):
            log.error("outbox %s: unreadable internal message %s; dropped", self.store.name, message.id)
            return True
        token = otel_context.attach(propagate.extract(dict(message.metadata)))
        try:
            if not await self._committed(marker, published):
                log.info(
                    "outbox %s: transaction %s did not commit; nothing published", self.store.name, marker
                )
                return True
            events = [self._event(item) for item in items]
            failures = await send(self.target, self.topic, events, CIMultiDict())
            if failures:
                log.warning("outbox %s: cannot publish to %s/%s: %s; will try again",
                            self.store.name, self.target.name, self.topic, failures[0].error)  # fmt: skip
                return False
            await self._remove(marker)
            return True
        finally:
            otel_context.detach(token)

    async def _committed(self, marker: str, published: float) -> bool:
        while True:
            if marker in self._failed:
                return False
            try:
                if await self.store.store.get(marker) is not None:
                    return True
            except StateError as exc:
                raise RuntimeError(f"cannot read outbox marker: {exc}") from exc  # delivered again
            if time.time() - published > OUTBOX_GRACE:
                return False
            await asyncio.sleep(MARKER_POLL)

    def _event(self, item: dict[str, Any]) -> Outgoing:
        value = base64.b64decode(item["value"])
        event = cloudevents.envelope(value, "application/json", source=self.source)
        event["subject"] = item["key"]
        return Outgoing("", event, b"", {"contentType": "application/json"})

    async def _remove(self, marker: str) -> None:
        try:
            await self.store.store.apply([Delete(marker)], atomic=False)
        except StateError as exc:
            log.info("outbox %s: marker %s stays until it expires: %s", self.store.name, marker, exc)

"""The sidecar's messaging: its pubsub components, the app's subscriptions, and outboxes.

Built with the sidecar; `start()` runs the outboxes' own subscribers, and `subscribe()`
(once the app listens) reads the declarative and programmatic subscriptions and starts
delivering. Subscriptions are read once, at start, as Dapr does.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from opentelemetry.trace import Tracer

from outrig.middleware import Call, CallError, Hop, Next, Pipeline
from outrig.middleware.tracing import ClientTracing

from . import assembly
from .blocks.delivery import Delivery
from .blocks.outbox import Outbox
from .blocks.pubsub import PublishEndpoint, PubSubEntry
from .blocks.state import StoreEntry
from .blocks.subscriptions import Subscription, from_app
from .components.metadata import MetadataError, text
from .components.pubsub import PUBSUB_TYPES, Consumer, PubSubError
from .observability import BACKLOG_PERIOD, SidecarMetrics, component_layers
from .options import SidecarOptions
from .resiliency import Chain, ResiliencyPolicies
from .resources import Resources

log = logging.getLogger("outrig.pubsub")

DEFAULT_PUBSUB = "pubsub"
ASK_WAIT = 2.0
"""How long the sidecar waits for the app's subscriptions before it reports ready."""


class Messaging:
    def __init__(
        self,
        options: SidecarOptions,
        resources: Resources,
        tracer: Tracer,
        state_stores: Mapping[str, StoreEntry],
        delivery: Pipeline,
        app_channel: Next,
        metrics: SidecarMetrics | None = None,
        resiliency: ResiliencyPolicies | None = None,
    ) -> None:
        self.metrics = metrics
        self.resiliency = resiliency
        self.app_id = options.app_id
        self.resources = resources
        self.delivery = delivery
        self.app_channel = app_channel
        # The app channel asks: `GET /dapr/subscribe` over HTTP, ListTopicSubscriptions over gRPC.
        self.asks_app = options.app_port is not None and options.app_protocol in ("http", "grpc")
        self.pubsubs = {
            spec.name: self._pubsub(spec, options, tracer)
            for spec in assembly.specs(resources, PUBSUB_TYPES, DEFAULT_PUBSUB, "pubsub.sqlite")
        }
        self.outboxes = [
            outbox
            for name, entry in state_stores.items()
            if (outbox := self._outbox(name, entry)) is not None
        ]
        self.subscriptions: list[Subscription] = []
        self._consumers: list[Consumer] = []
        self._late: asyncio.Task[None] | None = None
        self._backlogs: asyncio.Task[None] | None = None

    def _pubsub(self, spec: assembly.ComponentSpec, options: SidecarOptions, tracer: Tracer) -> PubSubEntry:
        """A configured pubsub, or the embedded default `pubsub` (SQLite in the outrig home,
        shared by the sidecars of this machine)."""
        create = PUBSUB_TYPES[spec.type].create
        broker = assembly.build(
            spec,
            "pubsub",
            lambda: create(spec.name, spec.settings, options.home, self.app_id),
            (PubSubError,),
        )
        chain = self._chain("component-outbound", spec.name)
        layers = [*component_layers(self.metrics, spec.name, spec.type), *chain.outer, ClientTracing(tracer)]
        pipeline = Pipeline([*layers, *chain.inner], PublishEndpoint(spec.name, broker))
        return PubSubEntry(spec.name, spec.type, broker, pipeline)

    def _outbox(self, name: str, entry: StoreEntry) -> Outbox | None:
        """Dapr's transactional outbox, when the store's metadata asks for it."""
        component = self.resources.component(name)
        settings = component.resource.settings() if component else {}
        if component is None or not settings.get("outboxPublishPubsub"):
            return None
        try:
            target = self._named_pubsub(settings, "outboxPublishPubsub")
            internal = self._named_pubsub(settings, "outboxPubsub", target.name)
            topic = text(settings, "outboxPublishTopic", required_hint="name the topic the items go to")
        except MetadataError as exc:
            raise component.metadata_error(exc) from None
        entry.outbox = Outbox(self.app_id, entry, internal, target, topic)
        return entry.outbox

    def _named_pubsub(self, settings: Mapping[str, Any], field: str, default: str = "") -> PubSubEntry:
        name = text(settings, field, default)
        found = self.pubsubs.get(name)
        if found is None:
            configured = ", ".join(sorted(self.pubsubs))
            raise MetadataError(field, name, "no pubsub component with this name",
                                f"name one of the configured pubsubs: {configured}")  # fmt: skip
        return found

    async def check(self) -> None:
        """Warn about brokers that cannot be reached now; the sidecar starts anyway."""
        for name, pubsub in self.pubsubs.items():
            try:
                await pubsub.component.ping()
                if self.metrics is not None:
                    self.metrics.component(name, pubsub.type, True)
            except PubSubError as exc:
                if self.metrics is not None:
                    self.metrics.component(name, pubsub.type, False)
                log.warning("pubsub %s (%s) is unreachable: %s; publishing fails and deliveries wait "
                            "until it is back", name, pubsub.type, exc)  # fmt: skip

    async def start(self) -> None:
        if self.metrics is not None:
            self._backlogs = asyncio.create_task(self._watch_backlogs())
        for outbox in self.outboxes:
            self._consumers.append(await outbox.internal.component.subscribe(outbox.internal_topic, outbox))

    async def subscribe(self) -> None:
        """Start delivering: declarative subscriptions first, then the app's own (one per
        pubsub and topic; a later duplicate is skipped with a warning, as is a subscription
        to a pubsub that is not configured). An app slow to answer `GET /dapr/subscribe`
        does not hold the sidecar back: its subscriptions start when it answers."""
        await self._start(self.resources.subscriptions)
        if not self.asks_app:
            return
        asking = asyncio.create_task(self._ask_app())
        done, _ = await asyncio.wait({asking}, timeout=ASK_WAIT)
        if done:
            await self._start(from_app(asking.result(), self.app_id))
            return
        log.warning("app %s has not answered GET /dapr/subscribe within %gs; its subscriptions "
                    "start when it does", self.app_id, ASK_WAIT)  # fmt: skip
        self._late = asyncio.create_task(self._subscribe_late(asking))

    async def _subscribe_late(self, asking: asyncio.Task[object]) -> None:
        await self._start(from_app(await asking, self.app_id))

    async def _start(self, found: Sequence[Subscription]) -> None:
        taken = {(s.pubsub, s.topic) for s in self.subscriptions}
        for subscription in found:
            key = (subscription.pubsub, subscription.topic)
            entry = self.pubsubs.get(subscription.pubsub)
            if entry is None:
                names = ", ".join(sorted(self.pubsubs))
                log.error("subscription to topic %s: pubsub %s is not configured (configured: %s); skipped",
                          subscription.topic, subscription.pubsub, names)  # fmt: skip
                continue
            if key in taken:
                log.warning("a second subscription to topic %s of pubsub %s (%s) is skipped",
                            subscription.topic, subscription.pubsub, subscription.kind.lower())  # fmt: skip
                continue
            taken.add(key)
            delivery = Delivery(
                subscription,
                entry,
                self.delivery,
                entry.component.consumer_group,
                self._recorder(subscription),
                self._inbound(subscription.pubsub),
            )
            batch = subscription.bulk.max_messages if subscription.bulk else 1
            self._consumers.append(
                await entry.component.subscribe(subscription.topic, delivery, at_least=batch)
            )
            self.subscriptions.append(subscription)
            log.info("subscribed to topic %s of pubsub %s (%s)",
                     subscription.topic, subscription.pubsub, subscription.kind.lower())  # fmt: skip

    async def stream(
        self, subscription: Subscription, endpoint: Next, release: Callable[[], None]
    ) -> Callable[[], Awaitable[None]]:
        """A streaming subscription (`SubscribeTopicEventsAlpha1`): the topic's events go
        through the delivery pipeline's layers (metrics, error mapping, the CONSUMER span) to
        `endpoint` instead of the app, under the same ack rules. Returns the unsubscribe; it
        calls `release`, which must end the deliveries in progress with RETRY: those events
        go back to the broker (never to the dead-letter topic)."""
        entry = self.pubsubs.get(subscription.pubsub)
        if entry is None:
            names = ", ".join(sorted(self.pubsubs))
            raise CallError("ERR_PUBSUB_NOT_FOUND",
                            f"pubsub {subscription.pubsub} not found (configured: {names})", 404)  # fmt: skip
        if any((s.pubsub, s.topic) == (subscription.pubsub, subscription.topic) for s in self.subscriptions):
            where = f"topic {subscription.topic} of pubsub {subscription.pubsub}"
            message = f"{where} already has a subscription on this sidecar; close it first"
            raise CallError("ERR_PUBSUB_SUBSCRIBE", message, 409)
        pipeline = Pipeline(self.delivery.middleware, endpoint)
        delivery = Delivery(subscription, entry, pipeline, entry.component.consumer_group,
                            self._recorder(subscription), self._inbound(subscription.pubsub))  # fmt: skip
        self.subscriptions.append(subscription)
        try:
            consumer = await entry.component.subscribe(subscription.topic, delivery)
        except BaseException:
            self.subscriptions.remove(subscription)
            raise
        self._consumers.append(consumer)
        log.info("subscribed to topic %s of pubsub %s (streaming)", subscription.topic, subscription.pubsub)

        async def unsubscribe() -> None:
            delivery.closing = True
            release()
            if subscription in self.subscriptions:
                self.subscriptions.remove(subscription)
            if consumer in self._consumers:
                self._consumers.remove(consumer)
                await consumer.close()
                log.info("stream of topic %s of pubsub %s closed; unsubscribed",
                         subscription.topic, subscription.pubsub)  # fmt: skip

        return unsubscribe

    def _chain(self, kind: str, target: str) -> Chain:
        return self.resiliency.chain(kind, target) if self.resiliency is not None else Chain((), ())

    def _inbound(self, pubsub: str) -> Callable[[Next], Next] | None:
        chain = self._chain("component-inbound", pubsub)
        return chain.wrap if chain else None

    def _recorder(self, subscription: Subscription) -> Callable[[str, bool], None] | None:
        metrics = self.metrics
        if metrics is None:
            return None
        return functools.partial(metrics.delivered, subscription.pubsub, subscription.topic)

    async def _watch_backlogs(self) -> None:
        """Poll each subscription's backlog for `outrig_pubsub_backlog`."""
        assert self.metrics is not None
        while True:
            for subscription in list(self.subscriptions):
                entry = self.pubsubs[subscription.pubsub]
                try:
                    count = await entry.component.backlog(subscription.topic)
                except PubSubError as exc:
                    log.debug("backlog of %s/%s: %s", subscription.pubsub, subscription.topic, exc)
                    continue
                self.metrics.backlog(subscription.pubsub, subscription.topic, count)
            await asyncio.sleep(BACKLOG_PERIOD)

    async def _ask_app(self) -> object:
        """The app's `GET /dapr/subscribe` (Dapr's programmatic subscriptions); none if the
        app does not serve that route or answers garbage."""
        call = Call(
            block="pubsub", operation="subscriptions", target=self.app_id, subject="dapr/subscribe",
            hop=Hop.APP_CHANNEL, route="", verb="GET",
        )  # fmt: skip
        try:
            result = await self.app_channel(call)
            body = await result.read()
        except CallError as exc:
            log.error("cannot ask app %s for its subscriptions: %s", self.app_id, exc.message)
            return []
        if result.status == 404:
            return []
        if result.status != 200:
            log.error("app %s answered GET /dapr/subscribe with HTTP %d; no programmatic subscriptions",
                      self.app_id, result.status)  # fmt: skip
            return []
        try:
            return json.loads(body) if body.strip() else []
        except ValueError as exc:
            log.error("app %s: GET /dapr/subscribe is not JSON (%s); no programmatic subscriptions",
                      self.app_id, exc)  # fmt: skip
            return []

    def describe_components(self) -> list[dict[str, Any]]:
        return [
            {"name": name, "type": e.type, "version": "v1", "capabilities": sorted(e.component.features)}
            for name, e in self.pubsubs.items()
        ]

    async def close(self) -> None:
        for task in (self._late, self._backlogs):
            if task is not None:
                task.cancel()
        for consumer in self._consumers:
            await consumer.close()
        for pubsub in self.pubsubs.values():
            await pubsub.component.close()

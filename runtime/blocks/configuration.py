"""Configuration: Dapr's configuration API (get, subscribe, unsubscribe) over pluggable stores.

Every store operation is a call of its own through the store's component pipeline
(metrics, resiliency, a CLIENT span `MGET configstore`). A subscription is a watch on the
store plus a set of pending keys and one worker, so the app gets its updates one at a
time, in order of change: each changed key is a `deliver` call through the delivery pipeline (a CONSUMER span
`process {store}`), which reads the key's current value (a CLIENT span of the store) and
hands the update to the subscription's sink: by default the app, POSTed Dapr's update
event at `/configuration/{store}/{key}` through the app channel pipeline (the app's
middleware, a CLIENT span), as pub/sub deliveries go; for gRPC's `SubscribeConfiguration`, a
`StreamSink` the RPC writes to its stream. Either way the per-key backlog, the re-reads
after a reconnect and the inbound retry policy are the same.

Update body, as Dapr's: `{"id": <subscription id>, "items": {key: {value, version,
metadata}}}`. A deleted or expired key is sent with an empty value and version and
`metadata.deleted = "true"` (Dapr's Redis store sends nothing, or `null`, depending on
the release). After a reconnect to the store, watched keys are read again and the
changed ones delivered, so updates made while the store was unreachable are not lost
(keys of a watch on all keys cannot be re-read that way: the log says so). Values are
read when delivered, so a state the app was already sent for a key (a notification
overtaken by the next change, or found again by a re-read) is not sent twice, and an
update is recorded as sent only once the app answered 2xx (a failed one is an error, so the
store's `component-inbound` retry policy sends it again).

A subscription to all keys sees every key of the store's database. Only string keys are
configuration items (hashes, lists, ... read as missing, so they are never sent), and a key
it never delivered is not sent as deleted when it goes (a state TTL expiring, another
tool's key deleted). A string written by another tool is sent, as Dapr does: keep
configuration in a database of its own (`redisDB`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from multidict import CIMultiDict

from outrig.middleware import Call, CallError, Hop, Next, Pipeline, Result

from .. import assembly
from ..components.configuration import (
    CONFIGURATION_TYPES,
    DELETED_EVENTS,
    RESYNC,
    Change,
    ConfigurationError,
    ConfigurationStore,
    Item,
    Watch,
)
from ..resources import Resources
from .requests import request_of

log = logging.getLogger("outrig.configuration")

APP_ROUTE = "/configuration/{storeName}/{key}"
DELETED = Item("", "", {"deleted": "true"})


@dataclass(frozen=True)
class GetConfiguration:
    keys: Sequence[str]


@dataclass(frozen=True)
class SubscribeConfiguration:
    keys: Sequence[str]
    sink: UpdateSink | None = None
    """Where updates go; None: POSTed to the app (which needs an app channel)."""


@dataclass(frozen=True)
class Update:
    """One update of a subscription: `item` None when the key was deleted or expired."""

    id: str
    store: str
    key: str
    item: Item | None

    def to_json(self) -> dict[str, Any]:
        """Dapr's update event: `{"id", "items": {key: {value, version, metadata}}}`."""
        return {"id": self.id, "items": {self.key: (self.item or DELETED).to_json()}}


class UpdateSink(Protocol):
    """Where a subscription's updates go. `send` answers 2xx only once the update was
    handed over (so it is recorded as sent); any other answer is an error the store's
    inbound retry policy may retry."""

    async def send(self, update: Update) -> Result: ...

    def close(self) -> None:
        """The subscription ended (unsubscribe, shutdown): no more updates."""
        ...


@dataclass(frozen=True)
class UnsubscribeConfiguration:
    id: str


@dataclass
class ConfigurationEntry:
    name: str
    type: str
    store: ConfigurationStore
    pipeline: Pipeline


@dataclass(eq=False)
class Subscription:
    id: str
    entry: ConfigurationEntry
    keys: tuple[str, ...]
    pending: dict[str, str] = field(default_factory=dict)
    """Keys to deliver, each with its latest event, in order of their first change. Values
    are read when delivered, so a key changed many times is one entry: the backlog is
    bounded by the number of distinct keys, however fast the store changes."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    last: dict[str, Item | None] = field(default_factory=dict)
    """What the app was last told and accepted (or what was stored when it subscribed), per
    key. A subscription to all keys keeps only keys delivered and not deleted since."""
    watch: Watch | None = None
    worker: asyncio.Task[None] | None = None
    sink: UpdateSink | None = None
    """None: the app, through the app channel."""

    def notify(self, change: Change) -> None:
        """The store's change handler: note the key (every watched key for a resync)."""
        if change.event == RESYNC:
            if not self.keys:
                log.warning("configuration subscription %s (all keys of %s): changes made while the store "
                            "was unreachable are not re-read", self.id, self.entry.name)  # fmt: skip
            for key in self.keys:
                self.pending[key] = RESYNC
        else:
            self.pending[change.key] = change.event
        self.ready.set()

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "store": self.entry.name, "keys": list(self.keys),
                "sink": "app" if self.sink is None else "stream"}  # fmt: skip


class StreamSink:
    """The updates of a subscription whose subscriber reads them as a stream (gRPC's
    `SubscribeConfiguration`): handed over one at a time, each counting as sent once the
    reader has written it, so a slow reader holds the worker back and the backlog stays
    the per-key `pending` (never a queue of stale messages). `release` is for the reader
    going away: it ends the subscription."""

    def __init__(self) -> None:
        self._handoff: asyncio.Queue[tuple[Update, asyncio.Future[bool]] | None] = asyncio.Queue()
        self._open: set[asyncio.Future[bool]] = set()
        self._end: Callable[[], Awaitable[None]] | None = None
        self.closed = False

    def attach(self, end: Callable[[], Awaitable[None]]) -> None:
        """How to end the subscription (set by `ConfigurationBlock` when it subscribes)."""
        self._end = end

    async def send(self, update: Update) -> Result:
        written: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if not self.closed:
            self._open.add(written)
            self._handoff.put_nowait((update, written))
        else:
            written.set_result(False)
        try:
            if await written:
                return Result(200)
        finally:
            self._open.discard(written)
        message = f"the update of {update.key} was not sent: the subscription's stream has ended"
        return Result(503, error=CallError("ERR_CONFIGURATION_DELIVER", message, 503))

    async def updates(self) -> AsyncIterator[Update]:
        """Each update, until the subscription ends; an update counts as written when the
        reader asks for the next one."""
        while (entry := await self._handoff.get()) is not None:
            update, written = entry
            yield update
            if not written.done():
                written.set_result(True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for written in self._open:
            if not written.done():
                written.set_result(False)
        self._handoff.put_nowait(None)

    async def release(self) -> None:
        """The reader is gone: end the subscription (once)."""
        self.close()
        end, self._end = self._end, None
        if end is not None:
            await end()


def configuration_stores(
    resources: Resources, home: Path, component_pipeline: Callable[[str, str, Next], Pipeline]
) -> dict[str, ConfigurationEntry]:
    """The configured `configuration.*` components with their pipelines (none by default)."""
    return {
        c.name: _entry(assembly.ComponentSpec(c.name, c.type, c.resource.settings(), c), home,
                       component_pipeline)
        for c in resources.components
        if c.type in CONFIGURATION_TYPES
    }  # fmt: skip


def _entry(
    spec: assembly.ComponentSpec, home: Path, component_pipeline: Callable[[str, str, Next], Pipeline]
) -> ConfigurationEntry:
    create = CONFIGURATION_TYPES[spec.type].create
    store = assembly.build(
        spec, "configuration store", lambda: create(spec.name, spec.settings, home), (ConfigurationError,)
    )
    pipeline = component_pipeline(spec.name, spec.type, ConfigurationEndpoint(store))
    return ConfigurationEntry(spec.name, spec.type, store, pipeline)


async def store_call(entry: ConfigurationEntry, operation: str, db_operation: str, request: object) -> Any:
    """One store operation through the store's component pipeline."""
    attributes = {**entry.store.span_attributes, "db.operation.name": db_operation}
    call = Call(
        block="configuration", operation=operation, target=entry.name, subject="", hop=Hop.COMPONENT,
        route="", request=request, attributes=attributes,
    )  # fmt: skip
    return (await entry.pipeline(call)).value


class ConfigurationBlock:
    """The endpoint of inbound pipelines for `configuration` calls; owns the subscriptions."""

    def __init__(
        self,
        stores: Mapping[str, ConfigurationEntry],
        delivery: Pipeline,
        has_app: bool,
        inbound: Callable[[str], Callable[[Next], Next] | None] | None = None,
    ) -> None:
        self.stores = stores
        self.delivery = delivery
        """Error mapping, metrics, the CONSUMER span, then `ConfigurationDelivery`."""
        self.has_app = has_app
        self.inbound = inbound
        """The store's `component-inbound` resiliency policy, wrapped around each delivery."""
        self.subscriptions: dict[str, Subscription] = {}

    def _entry(self, name: str) -> ConfigurationEntry:
        entry = self.stores.get(name)
        if entry is not None:
            return entry
        if not self.stores:
            raise CallError(
                "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
                f"configuration store {name} is not configured: no configuration.* component is loaded "
                "(add a Component of type configuration.redis to a --resources-path folder)",
                500,
                grpc_code="FAILED_PRECONDITION",  # Dapr's gRPC code for it; HTTP stays 500
            )
        names = ", ".join(sorted(self.stores))
        raise CallError(
            "ERR_CONFIGURATION_STORE_NOT_FOUND",
            f"configuration store {name} not found (configured: {names})",
            400,
        )

    async def __call__(self, call: Call) -> Result:
        entry = self._entry(call.target)
        request = await request_of(call)
        if isinstance(request, GetConfiguration):
            items = await store_call(entry, "get", "MGET", request.keys)
            return Result(200, value=items)
        if isinstance(request, SubscribeConfiguration):
            return Result(200, value=await self._subscribe(entry, request.keys, request.sink))
        if isinstance(request, UnsubscribeConfiguration):
            await self._unsubscribe(entry, request.id)
            return Result(200, value=True)
        raise CallError(
            "ERR_MALFORMED_REQUEST", f"unknown configuration request {type(request).__name__}", 400
        )

    async def _subscribe(
        self, entry: ConfigurationEntry, keys: Sequence[str], sink: UpdateSink | None = None
    ) -> str:
        if sink is None and not self.has_app:
            raise CallError(
                "ERR_APP_CHANNEL_NIL",
                "app channel is not initialized: cannot subscribe to configuration updates "
                "(start the sidecar with --app-port)",
                500,
            )
        sub = Subscription(str(uuid.uuid4()), entry, tuple(dict.fromkeys(keys)), sink=sink)
        sub.watch = await store_call(entry, "subscribe", "SUBSCRIBE", (sub.keys, sub.notify))
        if sub.keys:  # what the app would already read: the base for re-reads after a reconnect
            try:
                found = await store_call(entry, "get", "MGET", sub.keys)
            except BaseException:
                await _stop(sub)
                raise
            sub.last = {key: found.get(key) for key in sub.keys}
        # Deliveries start their own traces, not the subscribe request's.
        sub.worker = asyncio.create_task(self._work(sub), context=contextvars.Context())
        self.subscriptions[sub.id] = sub
        if isinstance(sink, StreamSink):
            sink.attach(lambda: self._end(sub))
        log.info("configuration subscription %s on store %s: %s", sub.id, entry.name,
                 ", ".join(sub.keys) if sub.keys else "all keys")  # fmt: skip
        return sub.id

    async def _unsubscribe(self, entry: ConfigurationEntry, sub_id: str) -> None:
        sub = self.subscriptions.get(sub_id)
        if sub is None or sub.entry is not entry:
            raise CallError(
                "ERR_CONFIGURATION_UNSUBSCRIBE",
                f"failed to unsubscribe {sub_id}: subscription with id {sub_id} does not exist"
                f" on configuration store {entry.name}",
                500,
            )
        await self._end(sub)

    async def _end(self, sub: Subscription) -> None:
        """End a subscription (unsubscribed, or its stream went away); once."""
        if self.subscriptions.get(sub.id) is not sub:
            return
        del self.subscriptions[sub.id]
        try:
            await store_call(sub.entry, "unsubscribe", "UNSUBSCRIBE", sub)
        finally:  # a failed (or timed out) store call must not leave the worker and watch behind
            await _stop(sub)
        log.info("configuration subscription %s on store %s ended", sub.id, sub.entry.name)

    async def _work(self, sub: Subscription) -> None:
        while True:
            await sub.ready.wait()
            sub.ready.clear()
            while sub.pending:
                key = next(iter(sub.pending))
                await self._deliver(sub, key, sub.pending.pop(key))

    async def _deliver(self, sub: Subscription, key: str, event: str) -> None:
        attributes = {
            "messaging.system": "redis", "messaging.destination.name": sub.entry.name,
            "messaging.operation.type": "process", "messaging.operation.name": "process",
            "outrig.configuration.key": key, "outrig.configuration.event": event,
            "outrig.configuration.subscription": sub.id,
            "outrig.configuration.sink": "app" if sub.sink is None else "stream",
        }  # fmt: skip
        call = Call(
            block="configuration", operation="deliver", target=sub.entry.name, subject=sub.entry.name,
            hop=Hop.COMPONENT, route=APP_ROUTE, request=(sub, key, event), attributes=attributes,
        )  # fmt: skip
        wrap = self.inbound(sub.entry.name) if self.inbound is not None else None
        attempt: Next = wrap(self.delivery) if wrap is not None else self.delivery
        try:
            result = await attempt(call)
        except CallError as error:
            result = Result.from_error(error)
        except Exception:
            log.exception("configuration subscription %s: delivery of %s failed", sub.id, key)
            return
        if result.error is not None:
            log.warning("configuration subscription %s: update of %s not delivered: %s",
                        sub.id, key, result.error.message)  # fmt: skip

    def close_streams(self) -> None:
        """End the stream of every gRPC subscription (at shutdown, before the gRPC server
        stops, so it does not wait out its grace period on them); as in Dapr, they end OK."""
        for sub in self.subscriptions.values():
            if sub.sink is not None:
                sub.sink.close()

    async def close(self) -> None:
        """End every subscription (at shutdown), then close the stores."""
        for sub in list(self.subscriptions.values()):
            with contextlib.suppress(Exception):
                await _stop(sub)
        self.subscriptions.clear()
        for entry in self.stores.values():
            await entry.store.close()

    def describe(self) -> list[dict[str, Any]]:
        return [sub.describe() for sub in self.subscriptions.values()]


async def _stop(sub: Subscription) -> None:
    if sub.sink is not None:
        sub.sink.close()
    if sub.worker is not None:
        sub.worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sub.worker
    await _close_watch(sub)


async def _close_watch(sub: Subscription) -> None:
    if sub.watch is not None:
        await sub.watch.close()
        sub.watch = None


class ConfigurationEndpoint:
    """The end of a store's component pipeline: one store operation, errors as Dapr's."""

    def __init__(self, store: ConfigurationStore) -> None:
        self.store = store

    async def __call__(self, call: Call) -> Result:
        try:
            if call.operation == "get":
                return Result(200, value=await self.store.get(call.request))
            if call.operation == "subscribe":
                keys, handler = call.request
                return Result(200, value=await self.store.watch(keys, handler))
            await _close_watch(call.request)
            return Result(200)
        except ConfigurationError as exc:
            code = {"get": "ERR_CONFIGURATION_GET", "subscribe": "ERR_CONFIGURATION_SUBSCRIBE"}.get(
                call.operation, "ERR_CONFIGURATION_UNSUBSCRIBE"
            )
            raise CallError(code, f"configuration store {call.target}: {exc}", 500) from exc


class ConfigurationDelivery:
    """The end of the delivery pipeline: read the key, hand the update to the subscription's
    sink (the app unless the subscription has its own)."""

    def __init__(self, app: Pipeline) -> None:
        self.app = AppSink(app)

    async def __call__(self, call: Call) -> Result:
        sub, key, event = call.request
        assert isinstance(sub, Subscription)
        if event in DELETED_EVENTS:
            item: Item | None = None
        else:
            found = await store_call(sub.entry, "get", "MGET", [key])
            item = found.get(key)
        # Values are read when delivered, so two notifications (or a notification and a
        # re-read after a reconnect) can find the same state: the app hears it once. A key
        # of an all-keys subscription that was never delivered (another tool's key deleted
        # or expiring, a hash, a list) is not a configuration item the app knows: not sent.
        if sub.last.get(key) == item:
            return Result(204, value="unchanged")
        sink: UpdateSink = sub.sink if sub.sink is not None else self.app
        result = await sink.send(Update(sub.id, sub.entry.name, key, item))
        if result.error is not None:
            return result
        # Recorded only once the sink took it: a retry of a failed update sends it again.
        if item is None and not sub.keys:
            sub.last.pop(key, None)
        else:
            sub.last[key] = item
        return result


class AppSink:
    """Updates POSTed to the app at `/configuration/{store}/{key}`, Dapr's update event as
    the body, through the app channel pipeline; 2xx is sent, anything else an error."""

    def __init__(self, app: Pipeline) -> None:
        self.pipeline = app

    async def send(self, update: Update) -> Result:
        store, key = update.store, update.key
        outbound = Call(
            block="configuration", operation="deliver", target=store,
            subject=f"configuration/{quote(store, safe='')}/{quote(key, safe='')}", hop=Hop.APP_CHANNEL,
            route=APP_ROUTE, metadata=CIMultiDict({"content-type": "application/json"}),
            body=json.dumps(update.to_json()).encode(), verb="POST", attributes={"url.template": APP_ROUTE},
        )  # fmt: skip
        result = await self.pipeline(outbound)
        if result.error is not None:
            return Result(result.status, error=result.error)
        await result.read()
        if not 200 <= result.status < 300:  # an error, so the inbound resiliency policy retries it
            return Result(
                500,
                error=CallError(
                    "ERR_CONFIGURATION_DELIVER",
                    f"the app answered the update of {key} with HTTP {result.status}",
                    500,
                ),
            )
        return Result(result.status)

    def close(self) -> None:
        """Nothing to close: the app channel outlives subscriptions."""

"""The sidecar's input bindings: events from components delivered to the app, as Dapr.

Once the app listens, the sidecar asks it `OPTIONS /{route}` for each input binding
(`route` is the component's `route` metadata, default its name): a 2xx answer, or 405
(a framework that has a POST route but no OPTIONS one), means the app wants the events,
as in Dapr; any other answer (404, a 3xx redirect) or an unreachable app means it does
not, and the binding stays idle (logged).
Each event is then a call through the delivery pipeline (error mapping, metrics, a
CONSUMER span `process {binding}`, the app pipeline with its CLIENT span) POSTed to the
route, retried per the binding's inbound resiliency policy; an answer that is not 2xx is
a failed delivery, as in Dapr.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from multidict import CIMultiDict

from outrig.middleware import Call, CallError, Hop, Next, Pipeline, Result

from . import assembly
from .blocks.bindings import BindingEntry, OutputEndpoint
from .blocks.delivery import post_to_app
from .components.bindings import BINDING_TYPES, BindingError, BindingEvent, InputBinding, is_input, is_output
from .components.metadata import text
from .resiliency import ResiliencyPolicies
from .resources import Resources

log = logging.getLogger("outrig.bindings")
CLOSE_GRACE = 2.0
"""Seconds shutdown waits for cancelled input-binding readers to finish."""


@dataclass
class InputEntry:
    name: str
    type: str
    binding: InputBinding
    route: str
    """The app path events go to, with its leading slash."""


class AppBindingDelivery:
    """The end of the delivery pipeline for binding events: POST the event to the app."""

    def __init__(self, app: Pipeline) -> None:
        self.app = app

    async def __call__(self, call: Call) -> Result:
        outbound = post_to_app(call)
        outbound.metadata = CIMultiDict(call.metadata)
        result = await self.app(outbound)
        if result.error is None:
            await result.read()
        return result


class InputBindings:
    def __init__(
        self,
        entries: Mapping[str, InputEntry],
        delivery: Pipeline,
        app_channel: Next,
        inbound: Callable[[str], Callable[[Next], Next] | None],
    ) -> None:
        self.entries = entries
        self.delivery = delivery
        self.app_channel = app_channel
        self.inbound = inbound
        """The resiliency wrapper of a binding's inbound policy, if it has one."""
        self.active: list[str] = []
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Ask the app which bindings it wants, and start reading those."""
        for entry in self.entries.values():
            if not await self._app_wants(entry):
                continue
            wrap = self.inbound(entry.name)
            attempt: Next = wrap(self._attempt) if wrap is not None else self._attempt
            self._readers.append(asyncio.create_task(self._read(entry, attempt)))
            self.active.append(entry.name)
            log.info(
                "input binding %s (%s) delivers to the app at POST %s", entry.name, entry.type, entry.route
            )

    async def _app_wants(self, entry: InputEntry) -> bool:
        call = Call(
            block="bindings", operation="options", target=entry.name, subject=entry.route.lstrip("/"),
            hop=Hop.APP_CHANNEL, route="", verb="OPTIONS",
        )  # fmt: skip
        try:
            result = await self.app_channel(call)
            await result.read()
        except CallError as exc:
            log.error("input binding %s: cannot ask the app (OPTIONS %s): %s; no events delivered",
                      entry.name, entry.route, exc.message)  # fmt: skip
            return False
        if 200 <= result.status < 300 or result.status == 405:
            return True
        log.info("input binding %s: the app answered OPTIONS %s with %d; no events delivered",
                 entry.name, entry.route, result.status)  # fmt: skip
        return False

    async def _read(self, entry: InputEntry, attempt: Next) -> None:
        async def handle(event: BindingEvent) -> None:
            await self._deliver(entry, attempt, event)

        try:
            await entry.binding.read(handle)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("input binding %s stopped reading", entry.name)

    async def _deliver(self, entry: InputEntry, attempt: Next, event: BindingEvent) -> None:
        headers: CIMultiDict[str] = CIMultiDict(event.metadata)
        headers.setdefault("content-type", "application/json")
        call = Call(
            block="bindings", operation="trigger", target=entry.name, subject=entry.name, hop=Hop.COMPONENT,
            route=entry.route, metadata=headers, body=event.data, verb="POST",
            attributes={
                **entry.binding.span_attributes, "messaging.destination.name": entry.name,
                "messaging.operation.type": "process", "messaging.operation.name": "process",
            },
        )  # fmt: skip
        try:
            result = await attempt(call)
        except CallError as error:
            log.warning("input binding %s: delivery failed: %s", entry.name, error.message)
            return
        if result.error is not None or not 200 <= result.status < 300:
            why = result.error.message if result.error is not None else f"the app answered {result.status}"
            log.warning("input binding %s: delivery failed: %s", entry.name, why)

    async def _attempt(self, call: Call) -> Result:
        """One attempt; an answer that is not 2xx is a failure the retry policy sees."""
        result = await self.delivery(call)
        if result.error is None and not 200 <= result.status < 300:
            error = CallError(
                "ERR_BINDING_DELIVERY", f"the app answered POST {call.route} with {result.status}", 500
            )
            return Result(500, error=error)
        return result

    def describe(self) -> list[str]:
        return list(self.active)

    async def close(self) -> None:
        """Stop the readers and wait (briefly) for them before the bindings and transport close."""
        for task in self._readers:
            task.cancel()
        if self._readers:
            await asyncio.wait(self._readers, timeout=CLOSE_GRACE)
        for entry in self.entries.values():
            await entry.binding.close()


def build(
    resources: Resources,
    pipeline: Callable[[str, str, Next], Pipeline],
    delivery: Pipeline,
    app_channel: Next,
    resiliency: ResiliencyPolicies,
) -> tuple[dict[str, BindingEntry], InputBindings]:
    """The configured bindings: output ones with their component pipelines, input ones
    ready to start once the app listens. Dapr's `direction` metadata (`input`, `output`,
    or both) limits a binding that could be either."""
    outputs: dict[str, BindingEntry] = {}
    inputs: dict[str, InputEntry] = {}
    for component in resources.components:
        if component.type not in BINDING_TYPES:
            continue
        settings = component.resource.settings()
        spec = assembly.ComponentSpec(component.name, component.type, settings, component)
        create = functools.partial(BINDING_TYPES[component.type].create, spec.name, spec.settings)
        binding = assembly.build(spec, "binding", create, (BindingError,))
        direction = str(settings.get("direction") or "input, output").lower()
        if is_output(binding) and "output" in direction:
            endpoint = OutputEndpoint(binding)
            outputs[spec.name] = BindingEntry(
                spec.name, spec.type, binding, pipeline(spec.name, spec.type, endpoint)
            )
        if is_input(binding) and "input" in direction:
            route = "/" + text(settings, "route", spec.name).lstrip("/")
            inputs[spec.name] = InputEntry(spec.name, spec.type, binding, route)

    def inbound(name: str) -> Callable[[Next], Next] | None:
        chain = resiliency.chain("component-inbound", name)
        return chain.wrap if chain else None

    return outputs, InputBindings(inputs, delivery, app_channel, inbound)


async def close(outputs: Mapping[str, BindingEntry], inputs: InputBindings) -> None:
    """Stop the input bindings' readers, then close every binding once."""
    await inputs.close()
    closed = {id(entry.binding) for entry in inputs.entries.values()}
    for entry in outputs.values():
        if id(entry.binding) not in closed:
            await entry.binding.close()

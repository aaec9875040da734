"""outrig's own CPU per invoke request, in-process: no sockets, no other processes.

Drives the sidecar's app API (adapter -> pipeline -> invoke block) with a prepared ASGI
request and a peer transport that answers at once, so what is timed is outrig's code plus
the OpenTelemetry SDK: without metrics or tracing, with metrics (the default), with
tracing too (and with span shipping to a real agent).

    python benchmarks/pipeline_cost.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from typing import Any

from multidict import CIMultiDict

from outrig.middleware import Call, Result
from outrig.runtime.api.http import AppApi
from outrig.runtime.nameresolution import Address
from outrig.runtime.options import SidecarOptions
from outrig.runtime.resources import ConfigurationResource, Resources
from outrig.runtime.sidecar import Sidecar

REQUESTS = 20_000
SCOPE: dict[str, Any] = {
    "type": "http", "method": "POST", "path": "/v1.0/invoke/b/method/echo",
    "raw_path": b"/v1.0/invoke/b/method/echo", "query_string": b"", "scheme": "http", "http_version": "1.1",
    "headers": [(b"host", b"127.0.0.1:3500"), (b"user-agent", b"fortio"), (b"content-length", b"1024"),
                (b"content-type", b"application/octet-stream")],
    "server": ("127.0.0.1", 3500), "client": ("127.0.0.1", 50000),
}  # fmt: skip


async def measure(sampling: float, store: bool, metrics: bool = True) -> float:
    os.environ["OUTRIG_TRACE_STORE"] = "1" if store else "0"
    config = ConfigurationResource.model_validate(
        {"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration", "metadata": {"name": "c"},
         "spec": {"tracing": {"samplingRate": sampling}, "metric": {"enabled": metrics}}}
    )  # fmt: skip
    sidecar = Sidecar(
        SidecarOptions(app_id="a", http_port=0, grpc_port=0, internal_port=0, metrics_port=0),
        Resources(configuration=config),
    )

    async def answer(host: str, port: int, path: str, call: Call, failure: str) -> Result:
        return Result(200, CIMultiDict([("content-type", "application/octet-stream")]), b"x" * 1024)

    sidecar.peer_transport.send = answer  # type: ignore[method-assign]
    sidecar.resolver.resolve = lambda app_id: Address("127.0.0.1", 1)  # type: ignore[method-assign]
    api = AppApi(sidecar.inbound, sidecar)
    body = b"x" * 1024

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    for _ in range(2000):
        await api(SCOPE, receive, send)
    start = time.process_time()
    for _ in range(REQUESTS):
        await api(SCOPE, receive, send)
    cost = (time.process_time() - start) / REQUESTS * 1e6
    sidecar.tracer_provider.shutdown()
    await sidecar.api_server.stop()
    await sidecar.peer_server.stop()
    return cost


def main() -> None:
    os.environ["OUTRIG_HOME"] = tempfile.mkdtemp(prefix="outrig-cost-")
    bare = asyncio.run(measure(0.0, False, metrics=False))
    print(f"{'tracing and metrics off':32} {bare:7.1f} us CPU per request")
    for sampling, store, label in ((0.0, False, "tracing off"), (1.0, False, "2 spans, not exported"),
                                   (1.0, True, "2 spans, shipped to the agent")):  # fmt: skip
        print(f"{label:32} {asyncio.run(measure(sampling, store)):7.1f} us CPU per request")


if __name__ == "__main__":
    main()

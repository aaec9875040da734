"""A Dapr app written with the official SDK's `dapr.ext.grpc.App`, as Dapr users write them.

Run: python sdk_grpc_app.py PORT. It serves Dapr's `AppCallback` on PORT:
- method `echo`: answers JSON of the data (text), content type and the text metadata it
  received (the SDK's App does not hand the verb and query string to the method);
- method `received`: JSON list of the events delivered so far;
- method `fail`: raises, so the SDK answers with a gRPC error;
- topic `orders` of pubsub `pubsub`: records each event (id, data, content type, topic,
  the `topic`/`pubsubname`/`traceparent` extensions and the dapr-api-token metadata);
- topic `unwanted` of pubsub `pubsub`: answers DROP;
- input binding `tick`: every `OnBindingEvent` is recorded as `{"binding": name, "data": ...}`
  with the name the sidecar sent, before the SDK routes it (so a binding the app does not
  list would show up).
`DAPR_GRPC_MAX_INBOUND_MESSAGE_SIZE_BYTES` raises the app's receive limit (the SDK reads it).
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from cloudevents.sdk.event import v1
from dapr.ext.grpc import App, BindingRequest, InvokeMethodRequest, InvokeMethodResponse, TopicEventResponse
from dapr.ext.grpc._servicer import _CallbackServicer

received: list[dict[str, Any]] = []
lock = threading.Lock()
_on_binding_event = _CallbackServicer.OnBindingEvent


def _recording_binding_event(self: _CallbackServicer, request: Any, context: Any) -> Any:
    with lock:
        received.append({"binding": request.name, "data": request.data.decode("utf-8", "replace")})
    return _on_binding_event(self, request, context)


_CallbackServicer.OnBindingEvent = _recording_binding_event  # type: ignore[method-assign]
app = App()


def _text_metadata(pairs: Any) -> dict[str, str]:
    return {str(k): v for k, v in (pairs or ()) if isinstance(v, str)}


@app.method(name="echo")
def echo(request: InvokeMethodRequest) -> InvokeMethodResponse:
    body = {
        "data": request.text(),
        "content_type": request.content_type,
        "metadata": _text_metadata(request.get_metadata()),
    }
    return InvokeMethodResponse(json.dumps(body).encode(), "application/json")


@app.method(name="received")
def list_received(request: InvokeMethodRequest) -> InvokeMethodResponse:
    with lock:
        return InvokeMethodResponse(json.dumps(received).encode(), "application/json")


@app.method(name="fail")
def fail(request: InvokeMethodRequest) -> InvokeMethodResponse:
    raise RuntimeError("the app failed on purpose")


@app.subscribe(pubsub_name="pubsub", topic="orders")
def orders(event: v1.Event) -> None:
    extensions = event.Extensions() or {}
    data = event.Data()
    with lock:
        received.append(
            {
                "id": event.EventID(),
                "data": data.decode() if isinstance(data, bytes) else str(data),
                "content_type": event.ContentType(),
                "topic": event.Subject(),
                "traceparent": extensions.get("traceparent", ""),
                "extension_topic": extensions.get("topic", ""),
                "pubsubname": extensions.get("pubsubname", ""),
                "token": extensions.get("_metadata_dapr-api-token", ""),
            }
        )


@app.binding("tick")
def tick(request: BindingRequest) -> None:
    """Recorded by `_recording_binding_event`, with the name the sidecar sent."""


@app.subscribe(pubsub_name="pubsub", topic="unwanted")
def unwanted(event: v1.Event) -> TopicEventResponse:
    return TopicEventResponse("drop")


if __name__ == "__main__":
    app.run(int(sys.argv[1]), listen_address="127.0.0.1")

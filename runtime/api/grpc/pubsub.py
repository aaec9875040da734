"""Dapr's publish RPCs: PublishEvent, BulkPublishEvent (and its Alpha1 name), as the same
publish Calls the HTTP API builds. A bulk publish with failed entries is an error, as in
Dapr's gRPC API (the HTTP API answers 500 with `failedEntries`)."""

from __future__ import annotations

from typing import Any

from dapr.proto.runtime.v1 import pubsub_pb2
from google.protobuf import empty_pb2

from outrig.middleware import CallError

from ...blocks.pubsub import Failure, PublishEntry, PublishRequest, check_entry_id, publish_entry
from ..pubsub_http import ROUTE_BULK, ROUTE_PUBLISH
from .calls import Context, Pipeline, rpc_call, run
from .errors import abort
from .wire import text_map


def partial_failure(pubsub: str, topic: str, failures: list[Failure]) -> CallError:
    """A bulk publish some entries of which failed: Dapr's gRPC API answers the whole RPC
    INTERNAL `ERR_PUBSUB_PUBLISH_MESSAGE` (its `failedEntries` stay empty); the ids of the
    failed entries go in `ErrorInfo.metadata["failedEntries"]`, so a client can still
    retry just those."""
    first = failures[0].error
    return CallError(
        "ERR_PUBSUB_PUBLISH_MESSAGE",
        f"error when publishing to topic {topic} in pubsub {pubsub}: {len(failures)} entries failed, "
        f"the first ({failures[0].entry_id}): {first}",
        500,
        metadata={"topic": topic, "error": first, "failedEntries": ",".join(f.entry_id for f in failures)},
    )


def check_names(pubsub: str, topic: str) -> None:
    if not pubsub:
        raise CallError("ERR_PUBSUB_EMPTY", "pubsub name is empty", 404)
    if not topic:
        raise CallError("ERR_TOPIC_EMPTY", f"topic is empty in pubsub {pubsub}", 404)


class PubSubRpcs:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def rpcs(self) -> dict[str, Any]:
        return {
            "PublishEvent": self.publish_event,
            "BulkPublishEvent": self.bulk_publish_event,
            "BulkPublishEventAlpha1": self.bulk_publish_event,
        }

    async def publish_event(
        self, request: pubsub_pb2.PublishEventRequest, context: Context
    ) -> empty_pb2.Empty:
        check_names(request.pubsub_name, request.topic)
        entry = publish_entry(
            request.data, request.data_content_type, text_map(request.metadata), "", "publish"
        )
        call = rpc_call(
            context, "PublishEvent", block="pubsub", operation="publish", target=request.pubsub_name,
            subject=request.topic, route=ROUTE_PUBLISH, verb="POST", request=PublishRequest([entry]),
        )  # fmt: skip
        await run(self.pipeline, call, context)
        return empty_pb2.Empty()

    async def bulk_publish_event(
        self, request: pubsub_pb2.BulkPublishRequest, context: Context
    ) -> pubsub_pb2.BulkPublishResponse:
        check_names(request.pubsub_name, request.topic)
        shared = text_map(request.metadata)
        entries: list[PublishEntry] = []
        seen: set[str] = set()
        for i, item in enumerate(request.entries):
            where = f"bulk publish entries[{i}]"
            check_entry_id(item.entry_id, seen, where, "entry_id", f"entries[{i}].entry_id")
            metadata = {**shared, **text_map(item.metadata)}
            entries.append(publish_entry(item.event, item.content_type, metadata, item.entry_id, where))
        call = rpc_call(
            context, "BulkPublishEvent", block="pubsub", operation="bulk_publish", target=request.pubsub_name,
            subject=request.topic, route=ROUTE_BULK, verb="POST", request=PublishRequest(entries, bulk=True),
        )  # fmt: skip
        result = await run(self.pipeline, call, context)
        if result.status == 204:
            return pubsub_pb2.BulkPublishResponse()
        failures: list[Failure] = result.value
        error = partial_failure(request.pubsub_name, request.topic, failures)
        await abort(context, error.located("pubsub", request.pubsub_name))

"""GetMetadata, SetMetadata, Shutdown: the sidecar's own RPCs, outside the pipeline as
their HTTP twins (`/v1.0/metadata`, `/v1.0/shutdown`) are."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Protocol

from dapr.proto.runtime.v1 import metadata_pb2
from google.protobuf import empty_pb2

from .calls import Context


class ControlView(Protocol):
    """What these RPCs need from the sidecar."""

    @property
    def extended_metadata(self) -> MutableMapping[str, str]: ...

    def metadata(self) -> dict[str, Any]: ...

    def request_shutdown(self) -> None: ...


_SUBSCRIPTION_TYPES = {
    "DECLARATIVE": metadata_pb2.PubsubSubscriptionType.DECLARATIVE,
    "PROGRAMMATIC": metadata_pb2.PubsubSubscriptionType.PROGRAMMATIC,
    "STREAMING": metadata_pb2.PubsubSubscriptionType.STREAMING,
}


def metadata_response(doc: dict[str, Any]) -> metadata_pb2.GetMetadataResponse:
    """`/v1.0/metadata`'s document as the gRPC message (the same facts, Dapr's field names)."""
    connection = doc.get("appConnectionProperties") or {}
    return metadata_pb2.GetMetadataResponse(
        id=doc["id"],
        runtime_version=doc.get("runtimeVersion", ""),
        enabled_features=doc.get("enabledFeatures", []),
        registered_components=[
            metadata_pb2.RegisteredComponents(
                name=c["name"],
                type=c["type"],
                version=c.get("version", ""),
                capabilities=c.get("capabilities", []),
            )
            for c in doc.get("components", [])
        ],
        extended_metadata={str(k): str(v) for k, v in (doc.get("extended") or {}).items()},
        subscriptions=[
            metadata_pb2.PubsubSubscription(
                pubsub_name=s["pubsubname"],
                topic=s["topic"],
                metadata=s.get("metadata", {}),
                rules=metadata_pb2.PubsubSubscriptionRules(
                    rules=[
                        metadata_pb2.PubsubSubscriptionRule(match=r["match"], path=r["path"])
                        for r in s.get("rules", [])
                    ]
                ),
                dead_letter_topic=s.get("deadLetterTopic", ""),
                type=_SUBSCRIPTION_TYPES.get(s.get("type", ""), metadata_pb2.PubsubSubscriptionType.UNKNOWN),
            )
            for s in doc.get("subscriptions", [])
        ],
        app_connection_properties=metadata_pb2.AppConnectionProperties(
            port=connection.get("port", 0),
            protocol=connection.get("protocol", ""),
            channel_address=connection.get("channelAddress", ""),
        ),
    )


class ControlRpcs:
    def __init__(self, sidecar: ControlView) -> None:
        self.sidecar = sidecar

    def rpcs(self) -> dict[str, Any]:
        return {"GetMetadata": self.get_metadata, "SetMetadata": self.set_metadata, "Shutdown": self.shutdown}

    async def get_metadata(self, request: Any, context: Context) -> metadata_pb2.GetMetadataResponse:
        return metadata_response(self.sidecar.metadata())

    async def set_metadata(
        self, request: metadata_pb2.SetMetadataRequest, context: Context
    ) -> empty_pb2.Empty:
        self.sidecar.extended_metadata[request.key] = request.value
        return empty_pb2.Empty()

    async def shutdown(self, request: Any, context: Context) -> empty_pb2.Empty:
        self.sidecar.request_shutdown()
        return empty_pb2.Empty()

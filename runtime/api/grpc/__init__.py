"""Dapr's gRPC API for the app: RPCs -> Calls through the inbound pipeline -> messages."""

from .errors import GRPC_CODES, HTTP_STATUSES, grpc_code, status_proto
from .server import GrpcApi, service_handler

__all__ = ["GRPC_CODES", "HTTP_STATUSES", "GrpcApi", "grpc_code", "service_handler", "status_proto"]

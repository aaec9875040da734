"""The outrig sidecar process: Dapr's APIs, the pipeline, components, and the CLI."""

from .options import SidecarOptions
from .resources import ResourceError, Resources, load
from .sidecar import Sidecar

__all__ = ["ResourceError", "Resources", "Sidecar", "SidecarOptions", "load"]

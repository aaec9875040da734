"""The traced multi-service demo behind `outrig demo`."""

from .runner import run_demo

__all__ = ["run_demo"]

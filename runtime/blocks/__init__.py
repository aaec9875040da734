"""Building blocks: the endpoints that pipelines end in."""

from .invoke import INVOKE_ROUTE, AppChannel, InvokeBlock, PeerChannel

__all__ = ["INVOKE_ROUTE", "AppChannel", "InvokeBlock", "PeerChannel"]

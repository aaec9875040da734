"""outrig's middleware pipeline: the public API for built-in and third-party middleware.

A middleware is any object with `async def __call__(self, call, call_next) -> Result`.
"""

from ._call import Body, Call, Hop, Middleware, Next, Result, Stream, iterate
from ._errors import CallError
from ._lifecycle import MiddlewareContext
from ._pipeline import ErrorMapping, Pipeline, fold
from .plugins import PluginError

__all__ = [
    "Body",
    "Call",
    "CallError",
    "ErrorMapping",
    "Hop",
    "Middleware",
    "MiddlewareContext",
    "Next",
    "Pipeline",
    "PluginError",
    "Result",
    "Stream",
    "fold",
    "iterate",
]

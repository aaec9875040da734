"""The plugin author's test kit: a call, a fake rest-of-chain, spans in memory, a real sidecar.

    from outrig.middleware.testing import Recorder, capture_spans, make_call, run

    async def test_blocks_without_token() -> None:
        rest = Recorder()
        result = await run(MyPlugin(MyPlugin.Config(header="x-token")), make_call(), rest)
        assert result.status == 401 and rest.calls == []

`run` puts the plugin where the sidecar puts it (guarded, inside a server span, after
error mapping), so what a test sees is what a sidecar would do. `PluginSidecar` and the
`plugin_sidecar` fixture run the plugin in a real `outrig run` process.
"""

from ._testing_sidecar import PluginSidecar
from ._testkit import CapturedSpans, Recorder, capture_spans, configure, make_call, plugin_sidecar, run

__all__ = [
    "CapturedSpans",
    "PluginSidecar",
    "Recorder",
    "capture_spans",
    "configure",
    "make_call",
    "plugin_sidecar",
    "run",
]

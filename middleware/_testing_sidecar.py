"""A real sidecar running one plugin, for a plugin author's integration tests.

The plugin does not need to be installed: the harness registers it for the sidecar
process through a throwaway distribution folder on `PYTHONPATH` (an `entry_points.txt`
in the `outrig.middleware` group), so discovery is the same as for an installed plugin.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from ._testing_app import PUBSUB, TOPIC

STARTUP_SECONDS = 30.0
PIPELINES = ("httpPipeline", "appHttpPipeline")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PluginSidecar:
    """`outrig run` with one plugin in the chosen pipelines, an echo app, and an in-memory pubsub.

    `plugin` is the middleware class (registered under `type_name` for this sidecar only)
    or None when the type is installed. Use as a context manager; every process it starts
    is stopped on exit.
    """

    def __init__(
        self,
        type_name: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        plugin: type | None = None,
        pipelines: Sequence[str] = ("httpPipeline",),
        app_id: str = "plugin-test",
        env: Mapping[str, str] | None = None,
    ) -> None:
        unknown = [p for p in pipelines if p not in PIPELINES]
        if unknown:
            raise ValueError(f"pipelines must be among {PIPELINES}, got {unknown}")
        self.type_name = type_name
        self.metadata = dict(metadata or {})
        self.plugin = plugin
        self.pipelines = tuple(pipelines)
        self.app_id = app_id
        self.extra_env = dict(env or {})
        self._dir = tempfile.TemporaryDirectory(prefix="outrig-plugin-")
        self.root = Path(self._dir.name)
        self.http_port = self.grpc_port = self.app_port = 0
        self._procs: list[subprocess.Popen[bytes]] = []
        self.client = httpx.Client(timeout=30)

    # --- what a test uses ---------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def invoke(
        self, method: str, body: bytes = b"", headers: Mapping[str, str] | None = None, verb: str = "POST"
    ) -> httpx.Response:
        """Call the echo app through the sidecar (`/v1.0/invoke/{app_id}/method/{method}`)."""
        url = self.url(f"/v1.0/invoke/{self.app_id}/method/{method}")
        return self.client.request(verb, url, content=body, headers=dict(headers or {}))

    def publish(self, data: object, topic: str = TOPIC) -> httpx.Response:
        """Publish to the in-memory pubsub; the echo app is subscribed to `orders` at `/events`."""
        return self.client.post(self.url(f"/v1.0/publish/{PUBSUB}/{topic}"), json=data)

    def received(self) -> list[dict[str, Any]]:
        """What the echo app has received so far: method, path, headers, body of each request."""
        answer = self.client.get(f"http://127.0.0.1:{self.app_port}/_received")
        return list(answer.json())

    def wait_received(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            seen = self.received()
            if len(seen) >= count or time.monotonic() > deadline:
                return seen
            time.sleep(0.05)

    def log(self) -> str:
        """The sidecar's output so far."""
        return (self.root / "sidecar.log").read_text(errors="replace")

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> PluginSidecar:
        resources = self.root / "resources"
        resources.mkdir()
        component = {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "plugin"},
            "spec": {
                "type": self.type_name,
                "version": "v1",
                "metadata": [{"name": k, "value": v} for k, v in self.metadata.items()],
            },
        }
        pubsub = {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": PUBSUB},
            "spec": {"type": "pubsub.in-memory", "version": "v1", "metadata": []},
        }
        (resources / "components.yaml").write_text(yaml.safe_dump_all([component, pubsub]))
        handler = [{"name": "plugin", "type": self.type_name}]
        spec = {p: {"handlers": handler if p in self.pipelines else []} for p in PIPELINES}
        config = {"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration", "metadata": {"name": "plugin"}}
        (self.root / "config.yaml").write_text(yaml.safe_dump({**config, "spec": spec}))
        env = self._env()
        self.app_port = _free_port()
        app = self._spawn([sys.executable, "-m", "outrig.middleware._testing_app", str(self.app_port)],
                          "app.log", env)  # fmt: skip
        self._wait_port(self.app_port, app)
        self.http_port, self.grpc_port = _free_port(), _free_port()
        args = [
            sys.executable, "-m", "outrig.runtime", "run", "--app-id", self.app_id,
            "--app-port", str(self.app_port), "--dapr-http-port", str(self.http_port),
            "--dapr-grpc-port", str(self.grpc_port), "--metrics-port", str(_free_port()),
            "--resources-path", str(resources), "--config", str(self.root / "config.yaml"),
        ]  # fmt: skip
        sidecar = self._spawn(args, "sidecar.log", env)
        self._wait_healthy(sidecar)
        return self

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.client.close()
        self._dir.cleanup()

    def __enter__(self) -> PluginSidecar:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        home = self.root / "home"
        home.mkdir()
        paths = [p for p in sys.path if p]
        if self.plugin is not None:
            paths.insert(0, str(self._register(self.plugin)))
        env.update(OUTRIG_HOME=str(home), PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1")
        env.update(self.extra_env)
        return env

    def _register(self, plugin: type) -> Path:
        """A distribution folder that declares `plugin` under `type_name` in the entry-point group."""
        where = self.root / "plugins"
        info = where / "outrig_test_plugin-0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: outrig-test-plugin\nVersion: 0\n")
        target = f"{plugin.__module__}:{plugin.__qualname__}"
        (info / "entry_points.txt").write_text(f"[outrig.middleware]\n{self.type_name} = {target}\n")
        return where

    def _spawn(self, args: list[str], log_name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.root / log_name).open("wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._procs.append(proc)
        return proc

    def _wait_port(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"nothing listened on port {port} within {STARTUP_SECONDS:g}s")

    def _wait_healthy(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the sidecar exited ({proc.returncode}):\n{self.log()}")
            try:
                if self.client.get(self.url("/v1.0/healthz"), timeout=1).status_code == 204:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the sidecar was not healthy within {STARTUP_SECONDS:g}s:\n{self.log()}")

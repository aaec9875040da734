"""Starting real sidecars and apps on loopback for tests, and cleaning them all up."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ECHO_APP = Path(__file__).parent / "apps" / "echo.py"
SUBSCRIBER_APP = Path(__file__).parent / "apps" / "subscriber.py"
SDK_GRPC_APP = Path(__file__).parent / "apps" / "sdk_grpc_app.py"
STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline_s: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listened on port {port} within {deadline_s}s")


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


@dataclass
class Sidecar:
    app_id: str
    proc: subprocess.Popen[bytes]
    http_port: int
    log: Path
    app_port: int | None = None
    grpc_port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def invoke_url(self, app_id: str, method: str) -> str:
        return self.url(f"/v1.0/invoke/{app_id}/method/{method}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Processes:
    """Starts processes for one test and stops every one of them afterwards."""

    home: Path
    workdir: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(OUTRIG_HOME=str(self.home), OTEL_BSP_SCHEDULE_DELAY="100", PYTHONUNBUFFERED="1")
        env.update(extra or {})
        return env

    def spawn(
        self, args: list[str], log_name: str, env: dict[str, str] | None = None, new_session: bool = False
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / log_name).open("wb")
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env or self.env(), start_new_session=new_session
        )
        log.close()
        self.started.append(proc)
        return proc

    def echo_app(self, port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
        port = port or free_port()
        proc = self.spawn([sys.executable, str(ECHO_APP), str(port)], f"echo-{port}.log")
        wait_for_port(port, proc)
        return proc, port

    def subscriber_app(
        self,
        subscriptions: list[dict[str, object]] | None = None,
        behaviour: dict[str, str] | None = None,
        port: int | None = None,
    ) -> tuple[subprocess.Popen[bytes], int]:
        """tests/apps/subscriber.py: answers `/dapr/subscribe` with `subscriptions` and each
        route as `behaviour` says; every delivery is listed at GET /received."""
        port = port or free_port()
        env = self.env(
            {
                "SUBSCRIBER_SUBSCRIPTIONS": json.dumps(subscriptions or []),
                "SUBSCRIBER_BEHAVIOUR": json.dumps(behaviour or {}),
            }
        )
        proc = self.spawn([sys.executable, str(SUBSCRIBER_APP), str(port)], f"subscriber-{port}.log", env)
        wait_for_port(port, proc)
        return proc, port

    def sidecar(
        self,
        app_id: str,
        *,
        app_port: int | None = None,
        app_command: list[str] | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
        new_session: bool = False,
    ) -> Sidecar:
        http_port, grpc_port = free_port(), free_port()
        args = [
            sys.executable,
            "-m",
            "outrig.runtime",
            "run",
            "--app-id",
            app_id,
            "--dapr-http-port",
            str(http_port),
            "--dapr-grpc-port",
            str(grpc_port),
            "--metrics-port",
            str(free_port()),
            *(extra_args or []),
        ]
        if app_port is not None:
            args += ["--app-port", str(app_port)]
        if app_command:
            args += ["--", *app_command]
        log = self.workdir / f"sidecar-{app_id}-{http_port}.log"
        proc = self.spawn(args, log.name, self.env(env), new_session)
        sidecar = Sidecar(app_id, proc, http_port, log, app_port, grpc_port)
        if wait:
            self.wait_healthy(sidecar)
        return sidecar

    def wait_for_port(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        wait_for_port(port, proc)

    def sdk_grpc_app(self, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
        """tests/apps/sdk_grpc_app.py: a `dapr.ext.grpc.App` (methods echo, received, fail;
        topics orders and unwanted of pubsub `pubsub`) on a free port."""
        port = free_port()
        proc = self.spawn(
            [sys.executable, str(SDK_GRPC_APP), str(port)], f"sdk-app-{port}.log", self.env(env)
        )
        wait_for_port(port, proc)
        return proc, port

    def sidecar_with_echo(self, app_id: str, **kwargs: object) -> Sidecar:
        _, port = self.echo_app()
        return self.sidecar(app_id, app_port=port, **kwargs)  # type: ignore[arg-type]

    def wait_healthy(self, sidecar: Sidecar) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if sidecar.proc.poll() is not None:
                raise AssertionError(
                    f"sidecar {sidecar.app_id} exited ({sidecar.proc.returncode}):\n{sidecar.output()}"
                )
            try:
                if httpx.get(sidecar.url("/v1.0/healthz"), timeout=1).status_code == 204:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"sidecar {sidecar.app_id} not healthy in time:\n{sidecar.output()}")

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def component_yaml(name: str, component_type: str, **metadata: object) -> str:
    """A Dapr Component in the layout the error tests count lines in: `spec.type` on line 6,
    metadata item i (from 0) with its name on line 9 + 2i and its value on line 10 + 2i.
    Values are written as JSON, which YAML reads as the same value."""
    text = (
        f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n"
        f"spec:\n  type: {component_type}\n  version: v1\n"
    )
    if metadata:
        items = "".join(
            f"  - name: {key}\n    value: {json.dumps(value)}\n" for key, value in metadata.items()
        )
        text += "  metadata:\n" + items
    return text


def resource_folder(parent: Path, files: dict[str, str], folder: str = "res") -> Path:
    """A --resources-path folder under `parent` holding `files` (file name -> YAML)."""
    path = parent / folder
    path.mkdir()
    for file_name, content in files.items():
        (path / file_name).write_text(content)
    return path


def deliveries(app_port: int) -> list[dict[str, Any]]:
    """Every delivery tests/apps/subscriber.py on `app_port` has received so far, in order."""
    records: list[dict[str, Any]] = httpx.get(f"http://127.0.0.1:{app_port}/received", timeout=30).json()
    return records


def wait_for_deliveries(
    app_port: int, enough: Callable[[list[dict[str, Any]]], bool] = bool, within: float = 15
) -> list[dict[str, Any]]:
    """The subscriber's deliveries once `enough` holds of them (by default: any at all),
    or as they are after `within` seconds; the caller asserts what it expects."""
    deadline = time.monotonic() + within
    while True:
        got = deliveries(app_port)
        if enough(got) or time.monotonic() >= deadline:
            return got
        time.sleep(0.05)


def take(got: queue.Queue[Any], count: int, within: float) -> list[Any]:
    """Up to `count` items from a queue another thread fills, waiting at most `within` seconds."""
    deadline = time.monotonic() + within
    items: list[Any] = []
    while len(items) < count and time.monotonic() < deadline:
        try:
            items.append(got.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            break
    return items

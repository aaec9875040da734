"""The observability topology, natively, in one command: `scripts/stack`.

Starts on loopback, each on a free port unless given one: redis-server (no persistence),
Jaeger v2 (in memory, OTLP in), Prometheus (scraping each sidecar's `/metrics` every 2 s),
Grafana when it is installed (provisioned with `dashboards/` and a Prometheus datasource of
uid `prometheus`), and the three demo services (`frontend` -> `orders` -> `inventory`), each
behind its sidecar (`outrig run`), with `statestore` (state.redis) and `pubsub`
(pubsub.redis) on that Redis and spans exported over OTLP/gRPC to that Jaeger. The sidecars
talk mTLS to each other (a CA made with `outrig ca init` in the workdir), under an access
control policy that allows the demo's own calls, behind a cluster-wide rate limit on Redis;
they also have a secret store, configuration and lock stores on Redis and an output binding
`flaky` (to an endpoint that fails in bursts) behind a circuit breaker. Then it sends a
checkout to `frontend` through its sidecar every 0.2-0.5 s, and beside them the side calls
the dashboards' newer panels need (secrets, configuration, lock, the flaky binding, a denied
invocation, bursts past the rate limit: `Traffic._run_side`), until Ctrl-C or `--seconds`,
and stops everything it started, in order, on the way out (errors and SIGTERM included;
if the stack itself is killed, the kernel sends each child SIGTERM).

    .venv/bin/python -m outrig.runtime.demo.stack [--seconds N] [--prometheus-port P] ...

From Python (tests/test_stack.py):

    with Stack(workdir) as stack:          # start() on enter, stop() on exit
        traffic = stack.traffic().start()  # checkouts from a background thread
        ...
        stack.jaeger_query_port, stack.prometheus_port, stack.services["orders"].metrics_port

Binaries: `redis-server` and `prometheus` from PATH (scripts/install-redis.sh,
scripts/install-prometheus.sh) or `OUTRIG_REDIS_BIN` / `OUTRIG_PROMETHEUS_BIN`; Jaeger from
scripts/install-jaeger.sh's cache or `OUTRIG_JAEGER_BIN`; Grafana (`grafana` or
`grafana-server`) from PATH or `OUTRIG_GRAFANA_BIN`. A missing one is a `StackError` that
says how to install it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import functools
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple

import httpx

SERVICES = ("inventory", "orders", "frontend")
"""Started in this order: each service's callee is up before its callers."""
JAEGER_VERSION = "v1.76.0"
"""The Go module tag scripts/install-jaeger.sh builds (Jaeger v2.13.0)."""
STARTUP_SECONDS = 60.0
STOP_SECONDS = 15.0
REPO = Path(__file__).resolve().parents[2]
"""The source tree, in an editable install: its `dashboards/` provision Grafana."""

CHECKOUT = {"item": "espresso", "quantity": 1}
SOLD_OUT = {"item": "croissant", "quantity": 1}
"""Never in stock: refused with 409, so the dashboards have refusals to show too."""


class StackError(RuntimeError):
    """The stack could not start: a missing binary, or a process that failed (with its log)."""


# --- binaries -------------------------------------------------------------------------------


def _binary(variable: str, name: str, default: str | None, install: str) -> str:
    """`$variable` if set, else `default`; an error naming `install` if it cannot run."""
    binary = os.environ.get(variable) or default
    if not binary or not os.access(binary, os.X_OK) or not Path(binary).is_file():
        where = f"{binary} (from {variable})" if os.environ.get(variable) else binary or "PATH"
        raise StackError(f"no {name} at {where}: run {install} or set {variable}")
    return binary


def redis_binary() -> str:
    default = shutil.which("redis-server")
    return _binary("OUTRIG_REDIS_BIN", "redis-server", default, "scripts/install-redis.sh")


def jaeger_binary() -> str:
    tools = Path(os.environ.get("OUTRIG_TOOLS") or Path.home() / ".cache" / "outrig" / "tools")
    default = str(tools / f"jaeger-{JAEGER_VERSION}")
    return _binary(
        "OUTRIG_JAEGER_BIN", "Jaeger", default, "scripts/install-jaeger.sh (it builds Jaeger with Go)"
    )


def prometheus_binary() -> str:
    default = shutil.which("prometheus")
    return _binary("OUTRIG_PROMETHEUS_BIN", "prometheus", default, "scripts/install-prometheus.sh")


def grafana_binary() -> str | None:
    return os.environ.get("OUTRIG_GRAFANA_BIN") or shutil.which("grafana") or shutil.which("grafana-server")


def _grafana_home(binary: str) -> Path | None:
    """Grafana's `--homepath` (the folder holding conf/defaults.ini)."""
    candidates = [os.environ.get("OUTRIG_GRAFANA_HOME")]
    resolved = Path(binary).resolve()
    candidates += [str(resolved.parent.parent), "/usr/share/grafana", "/usr/local/share/grafana"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "conf" / "defaults.ini").is_file():
            return Path(candidate)
    return None


def dashboards_dir() -> Path | None:
    path = Path(os.environ.get("OUTRIG_DASHBOARDS") or REPO / "dashboards")
    return path if path.is_dir() else None


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _death_signal() -> Callable[[], None] | None:
    """A pre-exec hook asking the kernel to SIGTERM the child when the thread that started
    it dies (even by SIGKILL), so a killed stack leaves nothing running."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise StackError(
                f"{self.name} exited with code {self.proc.returncode}; its log ({self.log}) ends:\n"
                f"{self.tail()}"
            )


@dataclass
class Service:
    """One demo service and its sidecar; every port is on 127.0.0.1."""

    app_id: str
    app_port: int
    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"


def _port(given: int | None) -> int:
    return given if given else free_port()


# --- the stack ------------------------------------------------------------------------------


PORT_ATTEMPTS = 3


class Stack:
    """Everything `scripts/stack` runs. Ports not given are picked free when it is made;
    `workdir` (default: a temporary folder, removed at `stop()`) holds the generated
    configuration, the data and every process's log under `logs/`."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        redis_port: int | None = None,
        jaeger_otlp_grpc_port: int | None = None,
        jaeger_otlp_http_port: int | None = None,
        jaeger_query_port: int | None = None,
        prometheus_port: int | None = None,
        grafana: bool | None = None,
        grafana_port: int | None = None,
        scrape_interval: float = 2.0,
        keep_workdir: bool = False,
    ) -> None:
        self._own_workdir = workdir is None
        self.keep_workdir = keep_workdir
        self.workdir = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="outrig-stack-"))
        self._given = {
            name for name, value in (
                ("redis_port", redis_port), ("jaeger_otlp_grpc_port", jaeger_otlp_grpc_port),
                ("jaeger_otlp_http_port", jaeger_otlp_http_port), ("jaeger_query_port", jaeger_query_port),
                ("prometheus_port", prometheus_port),
            ) if value
        }  # fmt: skip
        self.redis_port = _port(redis_port)
        self.jaeger_otlp_grpc_port = _port(jaeger_otlp_grpc_port)
        self.jaeger_otlp_http_port = _port(jaeger_otlp_http_port)
        self.jaeger_query_port = _port(jaeger_query_port)
        self.prometheus_port = _port(prometheus_port)
        self.scrape_interval = scrape_interval
        self._grafana_wanted = grafana
        self._grafana_port = grafana_port
        self.grafana_port: int | None = None
        """Set once Grafana is up; None when it is not installed, not wanted, or failed."""
        self.warnings: list[str] = []
        self.services = {
            app_id: Service(app_id, free_port(), free_port(), free_port(), free_port()) for app_id in SERVICES
        }
        self.processes: list[Process] = []
        self._traffic: list[Traffic] = []
        self._client = httpx.Client(timeout=10)
        self._started = False

    # -- paths and URLs

    @property
    def home(self) -> Path:
        """OUTRIG_HOME of the stack's sidecars: their own registry and local trace store."""
        return self.workdir / "home"

    @property
    def ca_dir(self) -> Path:
        """The stack's CA (`outrig ca init`): the sidecars talk mTLS to each other."""
        return self.workdir / "ca"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def jaeger_url(self) -> str:
        return f"http://127.0.0.1:{self.jaeger_query_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def grafana_url(self) -> str | None:
        return f"http://127.0.0.1:{self.grafana_port}" if self.grafana_port else None

    @property
    def frontend(self) -> Service:
        return self.services["frontend"]

    # -- lifecycle

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Stack:
        """Start everything and wait until it serves; on any failure, stop what started."""
        if self._started:
            raise StackError("this stack was started already")
        self._started = True
        try:
            binaries = {"redis": redis_binary(), "jaeger": jaeger_binary(), "prometheus": prometheus_binary()}
            for folder in (self.logs, self.home):
                folder.mkdir(parents=True, exist_ok=True)
            self._on_free_ports(lambda: self._start_redis(binaries["redis"]), "redis_port")
            self._on_free_ports(
                lambda: self._start_jaeger(binaries["jaeger"]),
                "jaeger_otlp_grpc_port", "jaeger_otlp_http_port", "jaeger_query_port",
            )  # fmt: skip
            self._on_free_ports(lambda: self._start_prometheus(binaries["prometheus"]), "prometheus_port")
            self._start_services()
            self._maybe_start_grafana()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the traffic, then the sidecars (so their last spans reach Jaeger), then the
        rest, newest first: SIGTERM, then SIGKILL after STOP_SECONDS. Safe to call again."""
        for traffic in self._traffic:
            traffic.stop()
        sidecars = [p for p in self.processes if p.name.startswith("sidecar ")]
        others = [p for p in reversed(self.processes) if p not in sidecars]
        for batch in (sidecars, *([p] for p in others)):
            for process in batch:
                if process.proc.poll() is None:
                    process.proc.terminate()
            for process in batch:
                try:
                    process.proc.wait(STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    process.proc.kill()
                    process.proc.wait()
        self._client.close()
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def check(self) -> None:
        """Raise StackError if any process of the stack has exited."""
        for process in self.processes:
            process.check()

    # -- the parts

    def _spawn(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> Process:
        log = self.logs / f"{name.replace(' ', '-')}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(args),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env if env is not None else _clean_env(),
                cwd=self.workdir,
                # Its own session: a terminal's Ctrl-C reaches the stack only, which then
                # stops each part in order.
                start_new_session=True,
                preexec_fn=_death_signal(),
            )
        process = Process(name, proc, log)
        self.processes.append(process)
        return process

    def _on_free_ports(self, start: Callable[[], None], *ports: str) -> None:
        """Start a server; if a port picked for it was taken meanwhile (free ports are
        picked, released, then bound by the server: another process can come between),
        pick new ones and try again. Ports given by the caller are never changed."""
        for attempt in range(PORT_ATTEMPTS):
            try:
                start()
                return
            except StackError as exc:
                if "address already in use" not in str(exc).lower() or attempt == PORT_ATTEMPTS - 1:
                    raise
                if self._given.intersection(ports):
                    raise
                for name in ports:
                    setattr(self, name, free_port())

    def _wait(self, process: Process, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            process.check()
            try:
                if ready():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise StackError(
            f"{process.name}: {what} not within {STARTUP_SECONDS:.0f}s; its log ({process.log}) ends:\n"
            f"{process.tail()}"
        )

    def _start_redis(self, binary: str) -> None:
        data = self.workdir / "redis"
        data.mkdir(exist_ok=True)
        redis = self._spawn(
            "redis",
            [
                binary, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(data),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
            ],
        )  # fmt: skip
        self._wait(redis, f"listening on {self.redis_port}", lambda: _listening(self.redis_port))

    def _start_jaeger(self, binary: str) -> None:
        config = self.workdir / "jaeger.yaml"
        ports = (self.jaeger_otlp_grpc_port, self.jaeger_otlp_http_port, self.jaeger_query_port)
        config.write_text(jaeger_config(*ports, os.environ.get("OUTRIG_JAEGER_UI")))
        jaeger = self._spawn("jaeger", [binary, "--config", f"file:{config}"])
        self._wait(jaeger, f"listening on {ports}", lambda: all(_listening(p) for p in ports))
        if "not the Jaeger UI" in self._get(f"{self.jaeger_url}/").text:
            self.warnings.append(
                "this Jaeger (built from Go modules) serves a placeholder page, not its UI; its API works. "
                "Set OUTRIG_JAEGER_UI to a jaeger-ui build (index.html, static/) to browse traces."
            )

    def _start_prometheus(self, binary: str) -> None:
        config = self.workdir / "prometheus.yml"
        targets = {s.app_id: s.metrics_port for s in self.services.values()}
        config.write_text(prometheus_config(targets, self.scrape_interval))
        prometheus = self._spawn(
            "prometheus",
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                "--storage.tsdb.retention.time=1d",
            ],
        )
        self._wait(
            prometheus, "ready", functools.partial(self._answers, f"{self.prometheus_url}/-/ready", 200)
        )

    def _start_services(self) -> None:
        resources = self.workdir / "resources"
        resources.mkdir(exist_ok=True)
        address = f"127.0.0.1:{self.redis_port}"
        (resources / "statestore.yaml").write_text(component_yaml("statestore", "state.redis", address))
        (resources / "pubsub.yaml").write_text(component_yaml("pubsub", "pubsub.redis", address))
        secrets_file = self.workdir / "secrets.json"
        secrets_file.write_text(json.dumps({SECRET_NAME: secrets.token_hex(8)}) + "\n")
        flaky_url = f"http://127.0.0.1:{self.frontend.app_port}/flaky"
        for name, text in extra_resources(address, flaky_url, secrets_file).items():
            (resources / name).write_text(text)
        _redis_set(self.redis_port, CONFIG_KEY, "10||1")
        config = self.workdir / "config.yaml"
        config.write_text(configuration_yaml(self.jaeger_otlp_grpc_port))
        env = _clean_env()
        env.update(OUTRIG_HOME=str(self.home), OTEL_BSP_SCHEDULE_DELAY="1000", PYTHONUNBUFFERED="1")
        self._make_ca(env)
        started: dict[str, Process] = {}
        for service in self.services.values():
            args = [
                sys.executable, "-m", "outrig.runtime", "run",
                "--app-id", service.app_id,
                "--app-port", str(service.app_port),
                "--dapr-http-port", str(service.http_port),
                "--dapr-grpc-port", str(service.grpc_port),
                "--metrics-port", str(service.metrics_port),
                "--resources-path", str(resources),
                "--config", str(config),
                "--ca-dir", str(self.ca_dir),
                "--log-level", "warn",
                "--", sys.executable, "-m", "outrig.runtime.demo.service",
            ]  # fmt: skip
            started[service.app_id] = self._spawn(f"sidecar {service.app_id}", args, env)
        for app_id, process in started.items():
            health = self.services[app_id].url("/v1.0/healthz")
            self._wait(process, "healthy", functools.partial(self._answers, health, 204))
        # Ready once inventory's sidecar has its subscription, so the first orders are
        # delivered (and their traces complete) like every later one.
        inventory = self.services["inventory"]
        self._wait(
            started["inventory"],
            "subscribed to topic orders",
            lambda: any(
                s.get("topic") == "orders"
                for s in self._get(inventory.url("/v1.0/metadata")).json().get("subscriptions", [])
            ),
        )

    def _make_ca(self, env: dict[str, str]) -> None:
        """The trust domain the sidecars sign their workload certificates from (`outrig ca init`)."""
        if (self.ca_dir / "issuer.crt").is_file():
            return
        made = subprocess.run(
            [sys.executable, "-m", "outrig.runtime", "ca", "init",
             "--trust-domain", TRUST_DOMAIN, "--out", str(self.ca_dir)],
            env=env, capture_output=True, text=True, timeout=STARTUP_SECONDS,
        )  # fmt: skip
        if made.returncode != 0:
            raise StackError(f"outrig ca init failed ({made.returncode}): {made.stderr.strip()}")

    def _maybe_start_grafana(self) -> None:
        if self._grafana_wanted is False:
            return
        binary = grafana_binary()
        if binary is None:
            if self._grafana_wanted:
                raise StackError(
                    "no grafana or grafana-server on PATH: install Grafana or set OUTRIG_GRAFANA_BIN"
                )
            return
        home = _grafana_home(binary)
        if home is None:
            self.warnings.append(
                f"Grafana not started: no conf/defaults.ini near {binary}; set OUTRIG_GRAFANA_HOME"
            )
            return
        port = _port(self._grafana_port)
        root = self.workdir / "grafana"
        provisioning = root / "provisioning"
        for sub in ("datasources", "dashboards", "plugins", "alerting"):
            (provisioning / sub).mkdir(parents=True, exist_ok=True)
        (provisioning / "datasources" / "outrig.yaml").write_text(
            grafana_datasources(self.prometheus_url, self.jaeger_url)
        )
        dashboards = dashboards_dir()
        if dashboards is not None:
            (provisioning / "dashboards" / "outrig.yaml").write_text(grafana_dashboards(dashboards))
        else:
            self.warnings.append("Grafana has no dashboards: no dashboards/ folder (set OUTRIG_DASHBOARDS)")
        env = _clean_env()
        env.update(
            GF_PATHS_HOME=str(home),
            GF_PATHS_DATA=str(root / "data"),
            GF_PATHS_LOGS=str(root / "logs"),
            GF_PATHS_PLUGINS=str(root / "plugins"),
            GF_PATHS_PROVISIONING=str(provisioning),
            GF_SERVER_HTTP_ADDR="127.0.0.1",
            GF_SERVER_HTTP_PORT=str(port),
            GF_AUTH_ANONYMOUS_ENABLED="true",
            GF_AUTH_ANONYMOUS_ORG_ROLE="Admin",
            GF_AUTH_DISABLE_LOGIN_FORM="true",
            GF_ANALYTICS_REPORTING_ENABLED="false",
            GF_ANALYTICS_CHECK_FOR_UPDATES="false",
            GF_NEWS_NEWS_FEED_ENABLED="false",
        )
        # `grafana server` (Grafana 10+) or the older `grafana-server`.
        args = [binary, "server"] if Path(binary).name == "grafana" else [binary]
        grafana = self._spawn("grafana", [*args, f"--homepath={home}"], env)
        try:
            self._wait(
                grafana, "healthy", lambda: self._get(f"http://127.0.0.1:{port}/api/health").is_success
            )
        except StackError as exc:
            # Optional: the stack is useful without it.
            self.warnings.append(f"Grafana not started: {exc}")
            grafana.proc.terminate()
            try:
                grafana.proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                grafana.proc.kill()
                grafana.proc.wait()
            self.processes.remove(grafana)
            return
        self.grafana_port = port

    def _get(self, url: str) -> httpx.Response:
        return self._client.get(url, timeout=2)

    def _answers(self, url: str, status: int) -> bool:
        return self._get(url).status_code == status

    # -- traffic

    def checkout(self, order: dict[str, Any] | None = None, trace_id: str | None = None) -> httpx.Response:
        """One checkout to frontend through its sidecar, as the demo's user would send it;
        with `trace_id`, it starts that trace (a W3C `traceparent` of our own)."""
        headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"} if trace_id else {}
        return self._client.post(
            self.frontend.url("/v1.0/invoke/frontend/method/checkout"),
            json=order or CHECKOUT,
            headers=headers,
        )

    def traffic(self, interval: tuple[float, float] = (0.2, 0.5), traced_every: int = 5) -> Traffic:
        """A checkout every `interval` seconds (uniformly random between the two) from a
        background thread; every `traced_every`th carries a trace id of our own."""
        traffic = Traffic(self, interval, traced_every)
        self._traffic.append(traffic)
        return traffic

    def endpoints(self) -> list[tuple[str, str]]:
        """What to open, as (label, URL)."""
        lines = [
            ("Jaeger UI", f"{self.jaeger_url}/search?service=frontend"),
            ("Jaeger API", f"{self.jaeger_url}/api/traces?service=frontend&limit=20"),
            ("Prometheus UI", f"{self.prometheus_url}/graph"),
            ("Prometheus targets", f"{self.prometheus_url}/targets"),
        ]
        if self.grafana_url:
            lines.append(("Grafana", self.grafana_url))
            folder = dashboards_dir()
            for board in sorted(folder.glob("*.json")) if folder else []:
                uid = json.loads(board.read_text()).get("uid")
                # The dashboards link to Jaeger through their `jaeger_url` variable.
                link = f"{self.grafana_url}/d/{uid}?var-jaeger_url={self.jaeger_url}"
                lines.append((f"Grafana {board.stem}", link))
        for service in self.services.values():
            lines.append((f"{service.app_id} metrics", service.metrics_url))
        for service in self.services.values():
            lines.append((f"{service.app_id} Dapr API", service.url("/v1.0/metadata")))
        lines.append(("Redis", f"redis://127.0.0.1:{self.redis_port}"))
        kept = (
            "" if not self._own_workdir or self.keep_workdir else "  (removed at exit; --workdir keeps them)"
        )
        lines.append(("logs", f"{self.logs}{kept}"))
        return lines


SIDE_INTERVAL = 0.5
DENIED_EVERY = 4
BURST_EVERY = 10
BURST_SIZE = 30
"""Back to back through one sidecar: more than the rate limit's burst (20) admits at once."""
LOCK = {"resourceId": "stock-count", "lockOwner": "stack", "expiryInSeconds": 5}
UNLOCK = {"resourceId": "stock-count", "lockOwner": "stack"}


class TracedCheckout(NamedTuple):
    trace_id: str
    parent_span_id: str
    """The span id our `traceparent` named: the checkout's first span is its child."""
    sent_at: float
    """time.time() when it was sent."""


@dataclass
class Traffic:
    """Checkouts to the stack's frontend from a background thread, until `stop()`."""

    stack: Stack
    interval: tuple[float, float]
    traced_every: int
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    """Replies by HTTP status; 0 counts transport errors."""
    placed_traces: collections.deque[TracedCheckout] = field(
        default_factory=lambda: collections.deque(maxlen=1000)
    )
    """The checkouts that placed an order (201) in a trace of our own, oldest first."""
    errors: list[str] = field(default_factory=list)
    side: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)
    """The side calls (`SIDE_CALLS`), by (kind, HTTP status); 0 counts transport errors."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traffic:
        for target, name in ((self._run, "outrig-stack-traffic"), (self._run_side, "outrig-stack-side")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def summary(self) -> str:
        refused = sum(n for status, n in self.statuses.items() if 400 <= status < 500)
        failed = self.sent - self.statuses[201] - refused
        return f"{self.sent} checkouts: {self.statuses[201]} placed, {refused} refused, {failed} failed"

    def _run(self) -> None:
        n = 0
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                n += 1
                order = SOLD_OUT if n % 10 == 0 else CHECKOUT
                traced = n % self.traced_every == 0
                trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
                headers = {"traceparent": f"00-{trace_id}-{parent}-01"} if traced else {}
                sent_at = time.time()
                try:
                    reply = client.post(
                        self.stack.frontend.url("/v1.0/invoke/frontend/method/checkout"),
                        json=order,
                        headers=headers,
                    )
                    self.statuses[reply.status_code] += 1
                    if reply.status_code == 201 and traced:
                        self.placed_traces.append(TracedCheckout(trace_id, parent, sent_at))
                    elif reply.status_code >= 500:
                        self._note(f"{reply.status_code} {reply.text[:200]}")
                except httpx.HTTPError as exc:
                    self.statuses[0] += 1
                    self._note(f"{type(exc).__name__}: {exc}")
                self._stop.wait(random.uniform(*self.interval))

    def side_summary(self) -> str:
        kinds = sorted({kind for kind, _ in self.side})
        return "; ".join(
            f"{kind}: "
            + ", ".join(f"{n}x{status}" for (k, status), n in sorted(self.side.items()) if k == kind)
            for kind in kinds
        )

    def _run_side(self) -> None:
        """Every SIDE_INTERVAL s: a secret read, a configuration read, a lock and unlock and
        a call of the `flaky` binding (behind its circuit breaker), all on frontend's sidecar;
        every DENIED_EVERY-th round, frontend invokes inventory, which access control denies
        (403); every BURST_EVERY-th round, a burst of BURST_SIZE pings, some rate limited (429)."""
        frontend = self.stack.frontend
        n = 0
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                n += 1
                calls: list[tuple[str, str, str, dict[str, Any] | None]] = [
                    ("secret", "GET", f"/v1.0/secrets/{SECRET_STORE}/{SECRET_NAME}", None),
                    ("configuration", "GET", f"/v1.0/configuration/{CONFIG_STORE}?key={CONFIG_KEY}", None),
                    ("lock", "POST", f"/v1.0-alpha1/lock/{LOCK_STORE}", LOCK),
                    ("unlock", "POST", f"/v1.0-alpha1/unlock/{LOCK_STORE}", UNLOCK),
                    ("binding", "POST", f"/v1.0/bindings/{FLAKY_BINDING}", {"operation": "get"}),
                ]
                if n % DENIED_EVERY == 0:
                    calls.append(("denied", "GET", "/v1.0/invoke/inventory/method/stock/espresso", None))
                if n % BURST_EVERY == 0:
                    calls += [("burst", "GET", "/v1.0/invoke/frontend/method/ping", None)] * BURST_SIZE
                for kind, method, path, body in calls:
                    try:
                        reply = client.request(method, frontend.url(path), json=body)
                        self.side[kind, reply.status_code] += 1
                    except httpx.HTTPError:
                        self.side[kind, 0] += 1
                self._stop.wait(SIDE_INTERVAL)

    def _note(self, error: str) -> None:
        if len(self.errors) < 100:
            self.errors.append(error)


# --- generated configuration ----------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    """The caller's environment without OTEL_* settings, which would redirect the spans."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def _redis_set(port: int, key: str, value: str) -> None:
    """`SET key value` on the stack's Redis (a configuration item for the configuration API)."""
    parts = [b"SET", key.encode(), value.encode()]
    command = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command)
        reply = sock.recv(64)
    if not reply.startswith(b"+OK"):
        raise StackError(f"Redis refused SET {key}: {reply!r}")


def component_yaml(name: str, component_type: str, redis_address: str) -> str:
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\n"
        f"metadata:\n  name: {name}\n"
        f"spec:\n  type: {component_type}\n  version: v1\n  metadata:\n"
        f"  - name: redisHost\n    value: {json.dumps(redis_address)}\n"
        '  - name: redisPassword\n    value: ""\n'
    )


TRUST_DOMAIN = "public"
RATE_LIMIT = "per-method"
"""The stack's `middleware.outrig.ratelimit` handler: generous for the checkouts, not for bursts."""
SECRET_STORE, CONFIG_STORE, LOCK_STORE, FLAKY_BINDING = "localsecrets", "configstore", "lockstore", "flaky"
SECRET_NAME = "demo-api-key"
CONFIG_KEY = "orders.discount"


def configuration_yaml(otlp_grpc_port: int) -> str:
    """Tracing to Jaeger, metrics, mTLS, access control allowing the demo's own calls
    (frontend -> orders `POST /orders`, orders -> inventory `GET /stock/*`; anything else
    between sidecars is denied), and the rate limit on every call into a sidecar."""
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: stack\nspec:\n"
        '  tracing:\n    samplingRate: "1"\n    otel:\n'
        f"      endpointAddress: 127.0.0.1:{otlp_grpc_port}\n      isSecure: false\n      protocol: grpc\n"
        "  metric:\n    enabled: true\n"
        f"{SECURITY_YAML}"
    )


SECURITY_YAML = f"""\
  mtls:
    enabled: true
    workloadCertTTL: 2h
  accessControl:
    defaultAction: deny
    trustDomain: {TRUST_DOMAIN}
    policies:
    - appId: frontend
      defaultAction: deny
      namespace: default
      operations:
      - name: /orders
        httpVerb: ["POST"]
        action: allow
    - appId: orders
      defaultAction: deny
      namespace: default
      operations:
      - name: /stock/*
        httpVerb: ["GET"]
        action: allow
  httpPipeline:
    handlers:
    - name: {RATE_LIMIT}
      type: middleware.outrig.ratelimit
"""
"""The part of the Configuration compose/config/config.yaml shares with the stack's."""


def extra_resources(redis_address: str, flaky_url: str, secrets_file: Path) -> dict[str, str]:
    """The resources beyond state and pub/sub, by file name: the rate limit (on Redis,
    shared by the sidecars), a secret store, a configuration store, a lock store, the
    output binding `flaky` and a Resiliency circuit breaker on it."""
    redis = f"  - name: redisHost\n    value: {json.dumps(redis_address)}\n"
    header = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {}\nspec:\n  type: {}\n"
    return {
        "ratelimit.yaml": header.format(RATE_LIMIT, "middleware.outrig.ratelimit")
        + "  version: v1\n  metadata:\n"
        + '  - name: requestsPerSecond\n    value: "20"\n  - name: burst\n    value: "20"\n'
        + "  - name: key\n    value: method\n  - name: mode\n    value: cluster\n"
        + redis,
        "secretstore.yaml": header.format(SECRET_STORE, "secretstores.local.file")
        + f"  version: v1\n  metadata:\n  - name: secretsFile\n    value: {json.dumps(str(secrets_file))}\n",
        "configstore.yaml": header.format(CONFIG_STORE, "configuration.redis")
        + "  version: v1\n  metadata:\n"
        + redis,
        "lockstore.yaml": header.format(LOCK_STORE, "lock.redis") + "  version: v1\n  metadata:\n" + redis,
        "flaky.yaml": header.format(FLAKY_BINDING, "bindings.http")
        + f"  version: v1\n  metadata:\n  - name: url\n    value: {json.dumps(flaky_url)}\n",
        "resiliency.yaml": RESILIENCY_YAML,
    }


RESILIENCY_YAML = f"""\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: flaky
spec:
  policies:
    circuitBreakers:
      flaky:
        maxRequests: 1
        timeout: 2s
        trip: consecutiveFailures >= 3
  targets:
    components:
      {FLAKY_BINDING}:
        outbound:
          circuitBreaker: flaky
"""


def prometheus_config(targets: dict[str, int], interval: float) -> str:
    """One job `outrig` scraping each sidecar's `/metrics`. Each target is labelled with
    its `app_id`; `honor_labels` lets the sidecar's own `app_id` label win over it."""
    config = {
        "global": {"scrape_interval": f"{interval:g}s", "evaluation_interval": f"{interval:g}s"},
        "scrape_configs": [
            {
                "job_name": "outrig",
                "scrape_interval": f"{interval:g}s",
                "scrape_timeout": f"{interval:g}s",
                "honor_labels": True,
                "metrics_path": "/metrics",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"app_id": app_id}}
                    for app_id, port in targets.items()
                ],
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"  # JSON is YAML


def jaeger_config(grpc_port: int, http_port: int, query_port: int, ui_assets: str | None = None) -> str:
    """scripts/jaeger-config.yaml's shape with the ports filled in: in-memory storage, no
    batching (a span is queryable once exported), nothing else listening. `ui_assets`:
    a jaeger-ui build (index.html, static/) to serve; the binary built from Go modules
    has only a placeholder page."""
    ui = f"\n    ui:\n      assets_path: {json.dumps(ui_assets)}" if ui_assets else ""
    return f"""\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 50000
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false{ui}
    http:
      endpoint: "127.0.0.1:{query_port}"
    grpc:
      endpoint: "127.0.0.1:0"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "127.0.0.1:{grpc_port}"
      http:
        endpoint: "127.0.0.1:{http_port}"
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def grafana_datasources(prometheus_url: str, jaeger_url: str) -> str:
    datasources = {
        "apiVersion": 1,
        "datasources": [
            {"name": "Prometheus", "uid": "prometheus", "type": "prometheus", "access": "proxy",
             "url": prometheus_url, "isDefault": True, "jsonData": {"timeInterval": "2s"}},
            {"name": "Jaeger", "uid": "jaeger", "type": "jaeger", "access": "proxy", "url": jaeger_url},
        ],
    }  # fmt: skip
    return json.dumps(datasources, indent=2) + "\n"


def grafana_dashboards(folder: Path) -> str:
    providers = {
        "apiVersion": 1,
        "providers": [
            {"name": "outrig", "type": "file", "disableDeletion": True, "options": {"path": str(folder)}}
        ],
    }
    return json.dumps(providers, indent=2) + "\n"


# --- command line ---------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM and SIGHUP stop the stack as Ctrl-C does."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="scripts/stack",
        description="Redis, Jaeger, Prometheus (and Grafana, if installed) and the three demo services "
        "with their sidecars, under steady checkout traffic, until Ctrl-C.",
    )
    cli.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    cli.add_argument("--redis-port", type=int)
    cli.add_argument("--jaeger-port", type=int, help="Jaeger's UI and query API")
    cli.add_argument("--otlp-grpc-port", type=int, help="Jaeger's OTLP/gRPC receiver")
    cli.add_argument("--otlp-http-port", type=int, help="Jaeger's OTLP/HTTP receiver")
    cli.add_argument("--prometheus-port", type=int)
    cli.add_argument("--grafana-port", type=int)
    cli.add_argument("--no-grafana", action="store_true", help="do not start Grafana even if installed")
    cli.add_argument("--no-traffic", action="store_true", help="start everything, send nothing")
    cli.add_argument("--workdir", type=Path, help="configuration, data and logs (default: a temp dir)")
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    workdir = args.workdir
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(
        workdir,
        redis_port=args.redis_port,
        jaeger_otlp_grpc_port=args.otlp_grpc_port,
        jaeger_otlp_http_port=args.otlp_http_port,
        jaeger_query_port=args.jaeger_port,
        prometheus_port=args.prometheus_port,
        grafana=False if args.no_grafana else None,
        grafana_port=args.grafana_port,
        keep_workdir=True,  # removed below unless something failed
    )
    print("outrig stack: starting Redis, Jaeger, Prometheus and three services with their sidecars...")
    failed = True
    try:
        stack.start()
        width = max(len(label) for label, _ in stack.endpoints())
        print("\nUp: frontend -> orders -> inventory, each with its sidecar; state and pub/sub on Redis.\n")
        for label, url in stack.endpoints():
            print(f"  {label.ljust(width)}  {url}")
        if workdir is None:
            print("\n(The logs are removed at exit unless something fails; --workdir DIR keeps them.)")
        for warning in stack.warnings:
            print(f"\nnote: {warning}")
        _drive(stack, args.seconds, not args.no_traffic)
        failed = False
        return 0
    except StackError as exc:
        print(f"\noutrig stack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        failed = False
        return 0
    finally:
        print("\noutrig stack: stopping...", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stack.stop()
        if workdir is None:
            if failed and stack.processes:
                print(f"outrig stack: logs kept in {stack.logs}", file=sys.stderr)
            else:
                shutil.rmtree(stack.workdir, ignore_errors=True)
        print("outrig stack: stopped.")


def _drive(stack: Stack, seconds: float | None, send: bool) -> None:
    traffic = stack.traffic().start() if send else None
    what = "a checkout every 0.2-0.5 s" if send else "no traffic"
    until = f"for {seconds:g} s" if seconds is not None else "until Ctrl-C"
    print(f"\nSending {what} to frontend {until}.\n", flush=True)
    deadline = time.monotonic() + seconds if seconds is not None else None
    next_report = time.monotonic() + 10
    while deadline is None or time.monotonic() < deadline:
        time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
        stack.check()
        if traffic is not None and time.monotonic() >= next_report:
            next_report += 10
            print(f"  {traffic.summary()}", flush=True)
            print(f"    side calls (by status): {traffic.side_summary()}", flush=True)
            if traffic.errors:
                print(f"    last error: {traffic.errors[-1]}", flush=True)
    if traffic is not None:
        traffic.stop()
        print(f"  {traffic.summary()}")
        print(f"  side calls (by status): {traffic.side_summary()}")


if __name__ == "__main__":
    sys.exit(main())

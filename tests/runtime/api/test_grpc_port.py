"""`--dapr-grpc-port` left out: a taken 50001 means any free port (several sidecars on one
machine start), the app is told the port chosen, the ready line names it."""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from dapr.proto.runtime.v1 import dapr_pb2_grpc, metadata_pb2

from tests.support import Processes, Sidecar, free_port

EXITS_APP = str(Path(__file__).parent.parent.parent / "apps" / "exits.py")
DEFAULT = 50001


@contextlib.contextmanager
def default_port_taken() -> Iterator[None]:
    """50001 held by a listener for the test (or already taken by something else)."""
    holder = socket.socket()
    try:
        with contextlib.suppress(OSError):
            holder.bind(("127.0.0.1", DEFAULT))
            holder.listen()
        yield
    finally:
        holder.close()


def start_without_grpc_flag(procs: Processes, app_id: str, report: Path) -> Sidecar:
    http_port, app_port = free_port(), free_port()
    args = [
        sys.executable, "-m", "outrig.runtime", "run", "--app-id", app_id, "--dapr-http-port", str(http_port),
        "--metrics-port", str(free_port()), "--app-port", str(app_port),
        "--", sys.executable, EXITS_APP, str(report), "wait",
    ]  # fmt: skip
    log = f"sidecar-{app_id}.log"
    sidecar = Sidecar(app_id, procs.spawn(args, log), http_port, procs.workdir / log, app_port)
    procs.wait_healthy(sidecar)
    return sidecar


def ready_grpc_port(sidecar: Sidecar) -> int:
    deadline = time.monotonic() + 15
    while (found := re.search(r"gRPC API on 127\.0\.0\.1:(\d+)", sidecar.output())) is None:
        assert time.monotonic() < deadline, sidecar.output()
        time.sleep(0.05)
    return int(found.group(1))


def reported(report: Path) -> str:
    deadline = time.monotonic() + 15
    while not (report.exists() and report.read_text().endswith("\n")):
        assert time.monotonic() < deadline, f"the app never wrote {report}"
        time.sleep(0.05)
    return report.read_text()


def test_two_sidecars_without_the_flag_both_start_on_free_grpc_ports(
    procs: Processes, tmp_path: Path
) -> None:
    with default_port_taken():
        first = start_without_grpc_flag(procs, "port-a", tmp_path / "a")
        second = start_without_grpc_flag(procs, "port-b", tmp_path / "b")
    ports = [ready_grpc_port(first), ready_grpc_port(second)]
    assert DEFAULT not in ports and ports[0] != ports[1]
    for sidecar, port, report in zip((first, second), ports, (tmp_path / "a", tmp_path / "b"), strict=True):
        assert f"gRPC port {DEFAULT} is taken; serving the Dapr gRPC API on {port}" in sidecar.output()
        assert reported(report).split(",")[1] == str(port), "the app's DAPR_GRPC_PORT is the real port"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            got = dapr_pb2_grpc.DaprStub(channel).GetMetadata(metadata_pb2.GetMetadataRequest(), timeout=10)
        assert got.id == sidecar.app_id

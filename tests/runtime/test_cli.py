"""`outrig run` as a process supervisor: env for the app, ready line, signals, exit codes."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import Processes, free_port

EXITS_APP = str(Path(__file__).parent.parent / "apps" / "exits.py")


def wait_for_text(path: Path, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in (content := path.read_text()):
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {path}")


def test_app_gets_ports_and_id_and_its_exit_code_is_outrigs(procs: Processes, tmp_path: Path) -> None:
    report = tmp_path / "report"
    app_port = free_port()
    sidecar = procs.sidecar(
        "exiter",
        app_port=app_port,
        app_command=[sys.executable, EXITS_APP, str(report), "exit:7"],
        wait=False,
    )
    assert sidecar.proc.wait(30) == 7
    http_port, grpc_port, app_id = report.read_text().splitlines()[0].split(",")
    assert (int(http_port), app_id) == (sidecar.http_port, "exiter")
    assert int(grpc_port) == sidecar.grpc_port
    assert f"outrig: 'exiter' ready, Dapr HTTP API on 127.0.0.1:{sidecar.http_port}" in sidecar.output()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_are_forwarded_to_the_app(procs: Processes, tmp_path: Path, sig: signal.Signals) -> None:
    report = tmp_path / "report"
    sidecar = procs.sidecar(
        "waiter", app_port=free_port(), app_command=[sys.executable, EXITS_APP, str(report), "wait"]
    )
    sidecar.proc.send_signal(sig)
    assert sidecar.proc.wait(20) == 100 + sig
    assert f"signal {int(sig)}" in report.read_text()


def test_sidecar_alone_waits_for_its_app_port_then_stops_on_sigterm(procs: Processes) -> None:
    app_port = free_port()
    sidecar = procs.sidecar("later", app_port=app_port, wait=False)
    procs.wait_for_port(sidecar.http_port, sidecar.proc)
    assert httpx.get(sidecar.url("/v1.0/healthz/outbound"), timeout=5).status_code == 204
    reply = httpx.get(sidecar.url("/v1.0/healthz"), timeout=5)
    assert reply.status_code == 500 and reply.json()["errorCode"] == "ERR_HEALTH_NOT_READY"
    procs.echo_app(app_port)
    procs.wait_healthy(sidecar)
    sidecar.proc.send_signal(signal.SIGTERM)
    assert sidecar.proc.wait(15) == 0


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "shutdown API"])
def test_a_sidecar_waiting_for_its_app_can_be_stopped(procs: Processes, how: str) -> None:
    sidecar = procs.sidecar("never", app_port=free_port(), wait=False)
    procs.wait_for_port(sidecar.http_port, sidecar.proc)
    if how == "shutdown API":
        assert httpx.post(sidecar.url("/v1.0/shutdown")).status_code == 204
    else:
        sidecar.proc.send_signal(getattr(signal, how))
    assert sidecar.proc.wait(15) == 0


def test_signals_reach_an_app_started_through_a_shell(procs: Processes, tmp_path: Path) -> None:
    report = tmp_path / "report"
    shell = f"{sys.executable} {EXITS_APP} {report} wait; echo shell-went-on > {tmp_path / 'after'}"
    sidecar = procs.sidecar("shelled", app_port=free_port(), app_command=["sh", "-c", shell])
    sidecar.proc.send_signal(signal.SIGTERM)
    sidecar.proc.wait(20)
    assert f"signal {int(signal.SIGTERM)}" in report.read_text(), "the app behind sh -c got the signal"
    assert not (tmp_path / "after").exists(), "the shell itself was stopped too"


def test_an_app_that_dies_before_listening_ends_outrig_with_its_code(
    procs: Processes, tmp_path: Path
) -> None:
    sidecar = procs.sidecar(
        "crasher", app_port=free_port(), app_command=[sys.executable, "-c", "raise SystemExit(3)"], wait=False
    )
    assert sidecar.proc.wait(30) == 3
    assert "app exited with code 3 before it listened" in sidecar.output()


def test_port_in_use_is_a_clear_startup_error(procs: Processes) -> None:
    first = procs.sidecar("first")
    clash = procs.spawn(
        [
            sys.executable,
            "-m",
            "outrig.runtime",
            "run",
            "--app-id",
            "second",
            "--dapr-http-port",
            str(first.http_port),
        ],
        "clash.log",
    )
    assert clash.wait(30) == 1
    text = (procs.workdir / "clash.log").read_text()
    assert f"cannot listen on 127.0.0.1:{first.http_port} for the Dapr HTTP API: already in use" in text
    assert "--dapr-http-port" in text

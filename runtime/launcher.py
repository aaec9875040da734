"""`outrig run`: start the sidecar, then the app as a child; forward signals; exit as it exits."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Sequence

from . import envvars
from .options import SidecarOptions
from .resources import Resources
from .sidecar import Sidecar

log = logging.getLogger("outrig.run")

CHILD_STOP_GRACE = 10.0


def _die_with_parent() -> None:
    """In the child: get SIGTERM if outrig itself dies (even by SIGKILL), so no app is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def ready_line(sidecar: Sidecar, options: SidecarOptions) -> str:
    host = options.listen_address
    parts = [f"outrig: {options.app_id!r} ready", f"Dapr HTTP API on {host}:{sidecar.http_port}"]
    if options.app_port is not None:
        parts.append(f"app on {options.app_host}:{options.app_port}")
    parts.append(f"peers reach it on {host}:{sidecar.internal_port}")
    return ", ".join(parts)


async def run(options: SidecarOptions, resources: Resources, command: Sequence[str]) -> int:
    sidecar = Sidecar(options, resources)
    await sidecar.start()
    loop = asyncio.get_running_loop()
    child: asyncio.subprocess.Process | None = None

    def on_signal(sig: signal.Signals) -> None:
        if child is not None and child.returncode is None:
            child.send_signal(sig)
        else:
            sidecar.request_shutdown()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        if command:
            env = dict(os.environ)
            env[envvars.DAPR_HTTP_PORT] = str(sidecar.http_port)
            env[envvars.DAPR_GRPC_PORT] = str(options.grpc_port)
            env[envvars.APP_ID] = options.app_id
            if options.app_port is not None:
                env[envvars.APP_PORT] = str(options.app_port)
            try:
                child = await asyncio.create_subprocess_exec(
                    *command, env=env, start_new_session=True, preexec_fn=_die_with_parent
                )
            except OSError as exc:
                print(f"outrig: cannot start the app command {command[0]!r}: {exc.strerror}", file=sys.stderr)
                return 127
        if not await _until_app_ready(sidecar, child):
            assert child is not None and child.returncode is not None
            print(
                f"outrig: app exited with code {child.returncode} before it listened on "
                f"port {options.app_port}",
                file=sys.stderr,
            )
            return _exit_code(child.returncode)
        print(ready_line(sidecar, options), flush=True)
        return await _until_done(sidecar, child)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await sidecar.stop()


async def _until_app_ready(sidecar: Sidecar, child: asyncio.subprocess.Process | None) -> bool:
    """True once the app listens; False if the child exited first."""
    waiter = asyncio.create_task(sidecar.wait_for_app())
    if child is None:
        await waiter
        return True
    exited = asyncio.create_task(child.wait())
    done, _ = await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
    if waiter in done:
        exited.cancel()
        return True
    waiter.cancel()
    return False


async def _until_done(sidecar: Sidecar, child: asyncio.subprocess.Process | None) -> int:
    shutdown = asyncio.create_task(sidecar.wait_shutdown_requested())
    if child is None:
        await shutdown
        return 0
    exited = asyncio.create_task(child.wait())
    await asyncio.wait({shutdown, exited}, return_when=asyncio.FIRST_COMPLETED)
    shutdown.cancel()
    if child.returncode is None:
        child.terminate()
        try:
            await asyncio.wait_for(exited, CHILD_STOP_GRACE)
        except TimeoutError:
            child.kill()
            await exited
    assert child.returncode is not None
    return _exit_code(child.returncode)

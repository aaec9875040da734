"""`outrig run`: start the sidecar, then the app as a child; forward signals; exit as it exits.

The app runs in a process group of its own, so a terminal's Ctrl-C reaches it once (from
us), and signals go to the whole group: an app started through `sh -c` or `npm start`
gets them too, and none of its processes outlive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from . import envvars
from .options import SidecarOptions
from .resources import Resources
from .sidecar import Sidecar

log = logging.getLogger("outrig.run")

CHILD_STOP_GRACE = 10.0
PR_SET_PDEATHSIG = 1


def _death_signal() -> Callable[[], None] | None:
    """A pre-exec hook asking the kernel to SIGTERM the app if outrig dies (even by
    SIGKILL). Resolved here, so the child only makes one C call between fork and exec."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def ready_line(sidecar: Sidecar, options: SidecarOptions) -> str:
    host = options.listen_address
    parts = [
        f"outrig: {options.app_id!r} ready",
        f"Dapr HTTP API on {host}:{sidecar.http_port}",
        f"gRPC API on {host}:{sidecar.grpc_port}",
    ]
    if options.app_port is not None:
        parts.append(f"app on {options.app_host}:{options.app_port}")
    parts.append(f"peers reach it on {host}:{sidecar.internal_port}")
    if sidecar.metrics_port is not None:
        parts.append(f"metrics on {host}:{sidecar.metrics_port}")
    return ", ".join(parts)


def _signal_group(child: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, sig)


async def run(options: SidecarOptions, resources: Resources, command: Sequence[str]) -> int:
    loop = asyncio.get_running_loop()
    child: asyncio.subprocess.Process | None = None
    sidecar: Sidecar | None = None
    stop_early = False

    def on_signal(sig: signal.Signals) -> None:
        nonlocal stop_early
        if child is not None and child.returncode is None:
            _signal_group(child, sig)
        elif sidecar is not None:
            sidecar.request_shutdown()
        else:
            stop_early = True

    # Handlers first: the API port is bound while the sidecar is built, and a signal sent
    # as soon as it accepts connections must stop us cleanly, not kill us.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        sidecar = Sidecar(options, resources)
    except BaseException:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        raise
    if stop_early:
        sidecar.request_shutdown()
    try:
        await sidecar.start()
        if command:
            try:
                child = await asyncio.create_subprocess_exec(
                    *command,
                    env=_app_env(sidecar, options),
                    start_new_session=True,
                    preexec_fn=_death_signal(),
                )
            except OSError as exc:
                print(f"outrig: cannot start the app command {command[0]!r}: {exc.strerror}", file=sys.stderr)
                return 127
        ready = await _until_app_ready(sidecar, child)
        if ready is False:
            assert child is not None and child.returncode is not None
            print(
                f"outrig: app exited with code {child.returncode} "
                f"before it listened on port {options.app_port}",
                file=sys.stderr,
            )
            return _exit_code(child.returncode)
        if ready is None:  # shutdown asked for while waiting
            return await _stop_child(child)
        print(ready_line(sidecar, options), flush=True)
        return await _until_done(sidecar, child)
    finally:
        await sidecar.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _app_env(sidecar: Sidecar, options: SidecarOptions) -> dict[str, str]:
    env = dict(os.environ)
    env[envvars.DAPR_HTTP_PORT] = str(sidecar.http_port)
    env[envvars.DAPR_GRPC_PORT] = str(sidecar.grpc_port)
    env[envvars.APP_ID] = options.app_id
    if options.app_port is not None:
        env[envvars.APP_PORT] = str(options.app_port)
    return env


async def _until_app_ready(sidecar: Sidecar, child: asyncio.subprocess.Process | None) -> bool | None:
    """True once the app listens; False if the child exited first; None on shutdown."""
    waiter = asyncio.create_task(sidecar.wait_for_app())
    shutdown = asyncio.create_task(sidecar.wait_shutdown_requested())
    watched: set[asyncio.Task[object]] = {waiter, shutdown}
    exited = asyncio.create_task(child.wait()) if child is not None else None
    if exited is not None:
        watched.add(exited)
    done, pending = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if waiter in done:
        return True
    if exited is not None and exited in done:
        return False
    return None


async def _until_done(sidecar: Sidecar, child: asyncio.subprocess.Process | None) -> int:
    shutdown = asyncio.create_task(sidecar.wait_shutdown_requested())
    if child is None:
        await shutdown
        return 0
    exited = asyncio.create_task(child.wait())
    await asyncio.wait({shutdown, exited}, return_when=asyncio.FIRST_COMPLETED)
    shutdown.cancel()
    return await _stop_child(child)


async def _stop_child(child: asyncio.subprocess.Process | None) -> int:
    """The app's exit code, after asking its process group to stop if it still runs."""
    if child is None:
        return 0
    if child.returncode is None:
        _signal_group(child, signal.SIGTERM)
        try:
            await asyncio.wait_for(child.wait(), CHILD_STOP_GRACE)
        except TimeoutError:
            _signal_group(child, signal.SIGKILL)
            await child.wait()
    assert child.returncode is not None
    return _exit_code(child.returncode)

"""A real redis-server on a free loopback port, that a test can kill and start again.

scripts/test installs redis-server when the machine lacks it. A missing binary fails the
test with that hint: it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_port, wait_for_port


def redis_binary() -> str:
    binary = os.environ.get("OUTRIG_REDIS_BIN") or shutil.which("redis-server")
    if not binary:
        raise AssertionError(
            "no redis-server on PATH: install it (apt-get install redis-server; scripts/test does) "
            "or set OUTRIG_REDIS_BIN"
        )
    return binary


@dataclass
class RedisServer:
    """One redis-server; with `durable`, every acknowledged write is fsynced to its AOF."""

    workdir: Path
    durable: bool = False
    extra_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
            "--save", "", "--daemonize", "no", "--protected-mode", "no",
            "--appendonly", "yes" if self.durable else "no", "--appendfsync", "always", *self.extra_args,
        ]  # fmt: skip
        with (self.workdir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown save, so only what was already on disk survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

"""Name resolution through files in the outrig home folder, for sidecars on one machine.

Each sidecar writes `registry/<app-id>/<pid>.json` with its internal address, its pid
and its process start time once its app is ready, and removes it on stop. An entry whose
process is gone (or whose pid now belongs to another process: the start time differs) is
ignored and deleted. Lookups are cached for a second; a caller that finds an address
refusing connections calls `forget` and resolves again, which rescans.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

from .base import Address

CACHE_SECONDS = 1.0


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, started: int | None) -> bool:
    if Path("/proc/self/stat").exists():
        now = process_start(pid)
        return now is not None and (started is None or now == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalResolver:
    def __init__(self, home: Path) -> None:
        self.root = home / "registry"
        self._cache: dict[str, tuple[float, list[Address], itertools.cycle[Address]]] = {}
        self._mine: Path | None = None

    def register(self, app_id: str, address: Address) -> None:
        folder = self.root / app_id
        folder.mkdir(parents=True, exist_ok=True)
        entry = folder / f"{os.getpid()}.json"
        tmp = entry.with_suffix(".tmp")
        pid = os.getpid()
        entry_data = {"host": address.host, "port": address.port, "pid": pid, "started": process_start(pid)}
        tmp.write_text(json.dumps(entry_data))
        tmp.replace(entry)
        self._mine = entry

    def unregister(self) -> None:
        if self._mine is not None:
            self._mine.unlink(missing_ok=True)
            self._mine = None

    def resolve(self, app_id: str) -> Address | None:
        now = time.monotonic()
        cached = self._cache.get(app_id)
        if cached is None or cached[0] < now:
            found = self._scan(app_id)
            cached = (now + CACHE_SECONDS, found, itertools.cycle(found))
            self._cache[app_id] = cached
        return next(cached[2]) if cached[1] else None

    def forget(self, app_id: str) -> None:
        self._cache.pop(app_id, None)

    def _scan(self, app_id: str) -> list[Address]:
        folder = self.root / app_id
        if "/" in app_id or app_id.startswith(".") or not folder.is_dir():
            return []
        found = []
        for entry in sorted(folder.glob("*.json")):
            try:
                data = json.loads(entry.read_text())
                pid = int(data["pid"])
                started = data.get("started")
                address = Address(str(data["host"]), int(data["port"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if _alive(pid, None if started is None else int(started)):
                found.append(address)
            else:
                entry.unlink(missing_ok=True)
        return found

"""Name resolution through files in the outrig home folder, for sidecars on one machine.

Each sidecar writes `registry/<app-id>/<pid>.json` with its internal address once its app
is ready, and removes it on stop. A file whose process is gone is ignored and cleaned up,
so a crashed sidecar never attracts traffic. Lookups are cached for a second.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

from .base import Address

CACHE_SECONDS = 1.0


def _alive(pid: int) -> bool:
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
        tmp.write_text(json.dumps({"host": address.host, "port": address.port, "pid": os.getpid()}))
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
                address = Address(str(data["host"]), int(data["port"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if _alive(pid):
                found.append(address)
            else:
                entry.unlink(missing_ok=True)
        return found

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import Processes


class Mesh:
    """app-a and app-b, each an echo app behind its sidecar, shared by a test module."""

    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        self.a = procs.sidecar_with_echo("app-a")
        self.b = procs.sidecar_with_echo("app-b")
        self.client = httpx.Client(timeout=30)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("mesh")
    (root / "home").mkdir()
    procs = Processes(home=root / "home", workdir=root)
    try:
        mesh = Mesh(procs)
        yield mesh
        mesh.client.close()
    finally:
        procs.stop_all()

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import RedisServer
from tests.support import Processes


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """Real processes for one test, all stopped at its end; OUTRIG_HOME is private to it."""
    home = tmp_path / "home"
    home.mkdir()
    processes = Processes(home=home, workdir=tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server shared by the suites that only need one (each uses its own keys)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()

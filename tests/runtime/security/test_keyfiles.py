"""Key material reaches OpenSSL through memory, or a 0600 file that is gone after loading."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from outrig.runtime.security import keyfiles


def test_pem_file_is_in_memory_where_linux_allows() -> None:
    if not hasattr(os, "memfd_create"):
        pytest.skip("no memfd_create here")
    with keyfiles.pem_file(b"secret") as path:
        assert path.startswith("/proc/self/fd/")
        assert Path(path).read_bytes() == b"secret"
        assert "memfd:" in os.readlink(path)


def test_without_memfd_the_file_is_0600_in_a_0700_folder_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "memfd_create", raising=False)
    with keyfiles.pem_file(b"secret") as name:
        path = Path(name)
        assert path.read_bytes() == b"secret"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not path.exists() and not path.parent.exists()


def test_write_private_is_0600_whatever_the_umask_and_never_overwrites(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        keyfiles.write_private(tmp_path / "k", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        keyfiles.write_private(tmp_path / "k", b"y")

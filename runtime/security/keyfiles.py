"""Private key material on disk: written 0600 or not at all.

Python's `ssl` loads a certificate and key from files only. The workload key is handed to
OpenSSL through an anonymous in-memory file (`memfd_create`, Linux) so it never reaches a
file system; elsewhere through a 0600 file in a fresh 0700 folder, unlinked right after
loading. The CA's issuer and root keys are files by nature (the operator keeps them):
they are created 0600 from the first byte (`O_EXCL`, mode given to `open`), never chmod-ed
after the fact.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

PRIVATE_MODE = 0o600


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to a new file readable by its owner only; an existing file is an error."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # whatever the umask
        os.write(fd, data)
    finally:
        os.close(fd)


def write_public(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@contextlib.contextmanager
def pem_file(data: bytes) -> Iterator[str]:
    """A path OpenSSL can read `data` from, gone when the block ends."""
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        try:
            fd = memfd("outrig-workload", os.MFD_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                os.write(fd, data)
                yield f"/proc/self/fd/{fd}"
            finally:
                os.close(fd)
            return
    folder = tempfile.mkdtemp(prefix="outrig-key-")  # 0700
    path = Path(folder) / "workload.pem"
    try:
        write_private(path, data)
        yield str(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_chain(context: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    """`context.load_cert_chain` from memory: used by handshakes that start after it returns."""
    with pem_file(chain_pem + key_pem) as path:
        context.load_cert_chain(path)

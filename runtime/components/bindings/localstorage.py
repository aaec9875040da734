"""`bindings.localstorage`: files under `rootPath`, as Dapr's (create, get, list, delete).

`fileName` (request metadata) names the file relative to the root; `create` without one
picks a UUID and answers `{"fileName": ...}`; `list` answers the files under the root (or
under the folder `fileName` names) as a JSON array of paths relative to the root.
Where Dapr is weak: a name that leaves the root (`../x`, an absolute path, a symlink
anywhere on the way) is refused with a 400 naming it, where Dapr silently re-roots it; a
missing file is a 404, not a 500; data is written as sent (no guessing whether it is
base64). Paths are walked from the root one segment at a time with `O_NOFOLLOW` on open
directory handles, so a symlink swapped in during a request cannot lead outside the root;
the file work runs in a thread, so a big file does not stall the sidecar.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ..metadata import text
from .base import BindingError, BindingNotFoundError, BindingRequest, BindingRequestError, BindingResponse

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC
CREATE_MODE = 0o644


class LocalStorageBinding:
    operations = ("create", "get", "list", "delete")

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.span_attributes: Mapping[str, str | int] = {"db.system.name": "localstorage"}

    @classmethod
    def create(cls, name: str, metadata: Mapping[str, Any]) -> LocalStorageBinding:
        root = Path(text(metadata, "rootPath", required_hint="the folder the files live in"))
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    def segments(self, file_name: str) -> list[str]:
        """The name's path segments, refusing any that would leave the root."""
        if not file_name:
            raise BindingRequestError("metadata.fileName is required for this operation")
        if "\x00" in file_name:
            raise BindingRequestError(f"fileName {file_name!r} contains a NUL character")
        parts = [p for p in file_name.split("/") if p not in ("", ".")]
        if file_name.startswith("/") or ".." in parts or not parts:
            raise BindingRequestError(
                f"fileName {file_name!r} leaves the binding's rootPath; name a file under it"
            )
        return parts

    @contextmanager
    def _folder(self, file_name: str, parts: list[str], create: bool) -> Iterator[int]:
        """An open handle on the folder holding the last segment, walked without following links."""
        fd = os.open(self.root, DIR_FLAGS)
        try:
            for part in parts:
                if create:
                    with suppress(FileExistsError):
                        os.mkdir(part, dir_fd=fd)
                try:
                    inner = os.open(part, DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno == errno.ELOOP or _is_link(part, fd):
                        raise _escape(file_name) from None
                    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                        raise BindingNotFoundError(f"file {file_name!r} not found") from None
                    raise
                os.close(fd)
                fd = inner
            yield fd
        finally:
            os.close(fd)

    def _open(self, file_name: str, flags: int, create: bool = False) -> int:
        parts = self.segments(file_name)
        with self._folder(file_name, parts[:-1], create) as folder:
            try:
                return os.open(parts[-1], flags | FILE_FLAGS, CREATE_MODE, dir_fd=folder)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise _escape(file_name) from None
                if exc.errno in (errno.ENOENT, errno.EISDIR, errno.ENOTDIR):
                    raise BindingNotFoundError(f"file {file_name!r} not found") from None
                raise

    def _create(self, file_name: str, data: bytes) -> None:
        fd = self._open(file_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, create=True)
        with os.fdopen(fd, "wb") as out:
            out.write(data)

    def _get(self, file_name: str) -> bytes:
        fd = self._open(file_name, os.O_RDONLY)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise BindingNotFoundError(f"file {file_name!r} not found (it is not a regular file)")
        with os.fdopen(fd, "rb") as source:
            return source.read()

    def _delete(self, file_name: str) -> None:
        parts = self.segments(file_name)
        with self._folder(file_name, parts[:-1], False) as folder:
            try:
                os.unlink(parts[-1], dir_fd=folder)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.EISDIR, errno.EPERM):
                    raise BindingNotFoundError(f"file {file_name!r} not found") from None
                raise

    def _list(self, file_name: str) -> list[str]:
        parts = self.segments(file_name) if file_name else []
        with self._folder(file_name, parts, False) as folder:
            found: list[str] = []
            for top, _, files, _ in os.fwalk(".", dir_fd=folder, follow_symlinks=False):
                prefix = "/".join([*parts, *Path(top).parts])
                found.extend(f"{prefix}/{f}" if prefix else f for f in files)
            return sorted(found)

    async def invoke(self, request: BindingRequest) -> BindingResponse:
        metadata = request.metadata
        name = metadata.get("fileName", "")
        try:
            if request.operation == "create":
                name = name or str(uuid.uuid4())
                await asyncio.to_thread(self._create, name, request.data)
                relative = "/".join(self.segments(name))
                return BindingResponse(json.dumps({"fileName": relative}).encode())
            if request.operation == "get":
                return BindingResponse(await asyncio.to_thread(self._get, name))
            if request.operation == "list":
                return BindingResponse(json.dumps(await asyncio.to_thread(self._list, name)).encode())
            await asyncio.to_thread(self._delete, name)
            return BindingResponse()
        except OSError as exc:
            raise BindingError(f"fileName {name!r}: {exc.strerror or type(exc).__name__}") from None

    async def close(self) -> None:
        pass


def _is_link(name: str, folder: int) -> bool:
    """Whether `name` is a symlink (to tell a refused link from a missing or plain file)."""
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _escape(file_name: str) -> BindingRequestError:
    return BindingRequestError(
        f"fileName {file_name!r} leaves the binding's rootPath (a symlink on the way); name a file under it"
    )

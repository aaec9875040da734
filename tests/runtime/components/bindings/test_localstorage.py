"""`bindings.localstorage`: create/get/list/delete under the root; escapes refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from outrig.runtime.components.bindings import (
    BindingNotFoundError,
    BindingRequest,
    BindingRequestError,
    LocalStorageBinding,
)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorageBinding:
    return LocalStorageBinding.create("files", {"rootPath": str(tmp_path / "root")})


async def test_create_get_list_delete(storage: LocalStorageBinding) -> None:
    made = await storage.invoke(BindingRequest("create", b"hello", {"fileName": "a/b.txt"}))
    assert json.loads(made.data) == {"fileName": "a/b.txt"}
    assert (await storage.invoke(BindingRequest("get", b"", {"fileName": "a/b.txt"}))).data == b"hello"
    await storage.invoke(BindingRequest("create", b"x", {"fileName": "c.txt"}))
    listed = await storage.invoke(BindingRequest("list"))
    assert json.loads(listed.data) == ["a/b.txt", "c.txt"]
    assert json.loads((await storage.invoke(BindingRequest("list", b"", {"fileName": "a"}))).data) == [
        "a/b.txt"
    ]
    deleted = await storage.invoke(BindingRequest("delete", b"", {"fileName": "a/b.txt"}))
    assert deleted.data == b""
    with pytest.raises(BindingNotFoundError, match=r"a/b\.txt"):
        await storage.invoke(BindingRequest("get", b"", {"fileName": "a/b.txt"}))
    with pytest.raises(BindingNotFoundError):
        await storage.invoke(BindingRequest("delete", b"", {"fileName": "a/b.txt"}))


async def test_create_without_a_name_picks_one(storage: LocalStorageBinding) -> None:
    made = json.loads((await storage.invoke(BindingRequest("create", b"data"))).data)
    assert (await storage.invoke(BindingRequest("get", b"", made))).data == b"data"


@pytest.mark.parametrize(
    "name", ["../escape.txt", "a/../../escape.txt", "/etc/passwd", "link/x.txt", "nul\x00"]
)
async def test_names_leaving_the_root_are_refused(
    storage: LocalStorageBinding, tmp_path: Path, name: str
) -> None:
    (storage.root / "link").symlink_to(tmp_path)
    for operation in ("create", "get", "delete", "list"):
        with pytest.raises(BindingRequestError, match="fileName"):
            await storage.invoke(BindingRequest(operation, b"x", {"fileName": name}))
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "x.txt").exists()


async def test_get_and_delete_need_a_name(storage: LocalStorageBinding) -> None:
    with pytest.raises(BindingRequestError, match="fileName is required"):
        await storage.invoke(BindingRequest("get"))


async def test_a_symlink_loop_is_a_request_error_that_hides_the_root(storage: LocalStorageBinding) -> None:
    (storage.root / "loop").symlink_to(storage.root / "loop")
    for operation in ("create", "get", "delete", "list"):
        with pytest.raises(BindingRequestError, match="fileName 'loop/x'") as caught:
            await storage.invoke(BindingRequest(operation, b"x", {"fileName": "loop/x"}))
        assert str(storage.root) not in str(caught.value)


async def test_a_symlinked_file_inside_the_root_is_not_followed(
    storage: LocalStorageBinding, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep")
    (storage.root / "file").symlink_to(outside)
    for operation in ("create", "get"):
        with pytest.raises(BindingRequestError, match="fileName 'file'"):
            await storage.invoke(BindingRequest(operation, b"over", {"fileName": "file"}))
    assert outside.read_bytes() == b"keep"


async def test_a_folder_is_not_a_file(storage: LocalStorageBinding) -> None:
    await storage.invoke(BindingRequest("create", b"x", {"fileName": "d/f"}))
    with pytest.raises(BindingNotFoundError):
        await storage.invoke(BindingRequest("get", b"", {"fileName": "d"}))
    with pytest.raises(BindingNotFoundError):
        await storage.invoke(BindingRequest("get", b"", {"fileName": "d/f/g"}))

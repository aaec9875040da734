"""Secrets, output bindings and locks through the SDK's gRPC client against a real sidecar."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from dapr.clients import DaprClient

from tests.redis_server import RedisServer
from tests.support import Processes, component_yaml, resource_folder


def test_secrets_and_output_bindings(procs: Processes, tmp_path: Path, point_sdk: Callable[..., str]) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"db-password": "hunter2", "api-key": "k-1"}))
    files = tmp_path / "files"
    files.mkdir()
    folder = resource_folder(
        tmp_path,
        {
            "secrets.yaml": component_yaml("vault", "secretstores.local.file", secretsFile=str(secrets)),
            "files.yaml": component_yaml("files", "bindings.localstorage", rootPath=str(files)),
        },
    )
    sidecar = procs.sidecar("sdk-blocks", extra_args=["--resources-path", str(folder)])
    with DaprClient(point_sdk(sidecar)) as client:
        assert client.get_secret("vault", "db-password").secret == {"db-password": "hunter2"}
        bulk = client.get_bulk_secret("vault").secrets
        assert bulk == {"db-password": {"db-password": "hunter2"}, "api-key": {"api-key": "k-1"}}
        with pytest.raises(grpc.RpcError) as unknown:
            client.get_secret("nope", "x")
        assert isinstance(unknown.value, grpc.Call)
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT, "as Dapr (HTTP says 401)"

        client.invoke_binding("files", "create", data="hello", binding_metadata={"fileName": "a.txt"})
        assert (files / "a.txt").read_text() == "hello"
        got = client.invoke_binding("files", "get", binding_metadata={"fileName": "a.txt"})
        assert got.data == b"hello"


@pytest.mark.filterwarnings("ignore:.*Alpha.*:UserWarning")
def test_locks(
    procs: Processes, tmp_path: Path, point_sdk: Callable[..., str], redis_server: RedisServer
) -> None:
    lock = component_yaml("lockstore", "lock.redis", redisHost=redis_server.address)
    folder = resource_folder(tmp_path, {"lock.yaml": lock})
    sidecar = procs.sidecar("sdk-locks", extra_args=["--resources-path", str(folder)])
    with DaprClient(point_sdk(sidecar)) as client:
        assert client.try_lock("lockstore", "order-7", "me", expiry_in_seconds=30).success
        assert not client.try_lock("lockstore", "order-7", "you", expiry_in_seconds=30).success
        assert client.unlock("lockstore", "order-7", "you").status.name.upper() == "LOCK_BELONGS_TO_OTHERS"
        assert client.unlock("lockstore", "order-7", "me").status.name.upper() == "SUCCESS"

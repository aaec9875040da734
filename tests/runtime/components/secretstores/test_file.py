"""`secretstores.local.file`: flattening, separators, multiValued, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from outrig.runtime.components.metadata import MetadataError
from outrig.runtime.components.secretstores import FileSecretStore, SecretNotFoundError

SECRETS = {
    "redisPassword": "pw",
    "connectionStrings": {"sql": "sql-cs", "mysql": {"primary": "m1"}},
    "ports": [80, 443],
    "debug": True,
}


def store(tmp_path: Path, **metadata: str) -> FileSecretStore:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(SECRETS))
    return FileSecretStore.create("local", {"secretsFile": str(path), **metadata})


def test_nested_values_are_flattened_with_colons_by_default(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.get("redisPassword", {}) == {"redisPassword": "pw"}
    assert s.get("connectionStrings:sql", {}) == {"connectionStrings:sql": "sql-cs"}
    assert s.get("connectionStrings:mysql:primary", {}) == {"connectionStrings:mysql:primary": "m1"}
    assert s.get("ports:1", {}) == {"ports:1": "443"}
    assert s.get("debug", {}) == {"debug": "true"}
    assert sorted(s.bulk_get({})) == sorted(
        [
            "redisPassword",
            "connectionStrings:sql",
            "connectionStrings:mysql:primary",
            "ports:0",
            "ports:1",
            "debug",
        ]
    )
    assert s.features == frozenset()


def test_nested_separator_is_configurable(tmp_path: Path) -> None:
    assert store(tmp_path, nestedSeparator=".").get("connectionStrings.sql", {}) == {
        "connectionStrings.sql": "sql-cs"
    }


def test_multi_valued_makes_each_top_level_object_one_secret_with_many_keys(tmp_path: Path) -> None:
    s = store(tmp_path, multiValued="true")
    assert s.get("connectionStrings", {}) == {"sql": "sql-cs", "mysql:primary": "m1"}
    assert s.get("redisPassword", {}) == {"redisPassword": "pw"}
    assert s.features == frozenset({"MULTIPLE_KEY_VALUES_PER_SECRET"})
    assert s.bulk_get({})["connectionStrings"] == {"sql": "sql-cs", "mysql:primary": "m1"}


def test_a_missing_secret_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(SecretNotFoundError, match="nope"):
        store(tmp_path).get("nope", {})


def test_bad_files_are_metadata_errors_that_never_quote_the_file(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="secretsFile is required"):
        FileSecretStore.create("local", {})
    with pytest.raises(MetadataError, match="cannot read the secrets file") as missing:
        FileSecretStore.create("local", {"secretsFile": str(tmp_path / "none.json")})
    assert missing.value.name == "secretsFile"
    broken = tmp_path / "broken.json"
    broken.write_text('{"password": "hunter2", oops}')
    with pytest.raises(MetadataError, match="not valid JSON") as bad:
        FileSecretStore.create("local", {"secretsFile": str(broken)})
    assert "hunter2" not in str(bad.value)
    listed = tmp_path / "list.json"
    listed.write_text("[1]")
    with pytest.raises(MetadataError, match="JSON object"):
        FileSecretStore.create("local", {"secretsFile": str(listed)})
    with pytest.raises(MetadataError, match="multiValued"):
        FileSecretStore.create("local", {"secretsFile": str(listed), "multiValued": "maybe"})

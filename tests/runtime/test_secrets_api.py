"""The secrets API through real sidecars: get, bulk, scopes, secretKeyRef, and no leaks."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx

from outrig.telemetry import StoredSpan, TraceStore, trace_store_path
from tests.redis_server import RedisServer
from tests.support import Processes, Sidecar, component_yaml, resource_folder

SECRETS = {"redisPassword": "pw-1", "db": {"user": "app", "password": "pw-2"}, "token": "t-3"}


def secret_files(tmp_path: Path, extra: dict[str, str] | None = None, **files: str) -> Path:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(SECRETS))
    multi = tmp_path / "multi.json"
    multi.write_text(json.dumps(SECRETS))
    return resource_folder(
        tmp_path,
        {
            "local.yaml": component_yaml("localsecrets", "secretstores.local.file", secretsFile=str(path)),
            "multi.yaml": component_yaml(
                "multi",
                "secretstores.local.file",
                secretsFile=str(multi),
                multiValued="true",
                nestedSeparator=".",
            ),
            "env.yaml": component_yaml("env", "secretstores.local.env", prefix="OUTRIG_TEST_"),
            **(extra or {}),
            **files,
        },
    )


def start(procs: Processes, folder: Path, *args: str, env: dict[str, str] | None = None) -> Sidecar:
    return procs.sidecar(
        "secrets-app", extra_args=["--resources-path", str(folder), "--log-level", "debug", *args], env=env
    )


def test_get_bulk_metadata_and_errors(procs: Processes, tmp_path: Path) -> None:
    sidecar = start(procs, secret_files(tmp_path), env={"OUTRIG_TEST_API_KEY": "k-4"})

    def get(path: str) -> httpx.Response:
        return httpx.get(sidecar.url(f"/v1.0/secrets/{path}"))

    assert get("localsecrets/redisPassword").json() == {"redisPassword": "pw-1"}
    assert get("localsecrets/db:password").json() == {"db:password": "pw-2"}
    assert get("localsecrets/db:password?metadata.version_id=15").json() == {"db:password": "pw-2"}
    assert get("multi/db").json() == {"user": "app", "password": "pw-2"}
    assert get("env/API_KEY").json() == {"API_KEY": "k-4"}
    bulk = get("localsecrets/bulk")
    assert bulk.status_code == 200
    assert bulk.json() == {
        "redisPassword": {"redisPassword": "pw-1"}, "db:user": {"db:user": "app"},
        "db:password": {"db:password": "pw-2"}, "token": {"token": "t-3"},
    }  # fmt: skip
    assert get("multi/bulk").json()["db"] == {"user": "app", "password": "pw-2"}
    assert get("env/bulk").json() == {"API_KEY": {"API_KEY": "k-4"}}

    unknown = get("nostore/x")
    assert unknown.status_code == 401  # Dapr's runtime answers 401 here (its docs say 400)
    assert unknown.json()["errorCode"] == "ERR_SECRET_STORE_NOT_FOUND"
    assert "nostore" in unknown.json()["message"] and "localsecrets" in unknown.json()["message"]
    missing = get("localsecrets/nope")
    assert missing.status_code == 500 and missing.json()["errorCode"] == "ERR_SECRET_GET"
    assert "nope" in missing.json()["message"] and "localsecrets" in missing.json()["message"]
    assert get("env/NOT_SET").json()["errorCode"] == "ERR_SECRET_GET"
    wrong_verb = httpx.post(sidecar.url("/v1.0/secrets/localsecrets/token"))
    assert wrong_verb.status_code == 405 and wrong_verb.json()["errorCode"] == "ERR_METHOD_NOT_ALLOWED"


CONFIG = """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: scoped
spec:
  secrets:
    scopes:
    - storeName: localsecrets
      defaultAccess: deny
      allowedSecrets: ["token", "db:user"]
    - storeName: multi
      defaultAccess: allow
      deniedSecrets: ["db"]
"""


def test_scopes_deny_and_filter_bulk(procs: Processes, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    sidecar = start(procs, secret_files(tmp_path), "--config", str(config), env={"OUTRIG_TEST_A": "a"})

    def get(path: str) -> httpx.Response:
        return httpx.get(sidecar.url(f"/v1.0/secrets/{path}"))

    assert get("localsecrets/token").json() == {"token": "t-3"}
    denied = get("localsecrets/redisPassword")
    assert denied.status_code == 403
    assert denied.json() == {
        "errorCode": "ERR_PERMISSION_DENIED",
        "message": "access denied by policy to get 'redisPassword' from 'localsecrets'",
    }
    assert sorted(get("localsecrets/bulk").json()) == ["db:user", "token"]
    assert get("multi/db").status_code == 403
    assert get("multi/redisPassword").status_code == 200
    assert "db" not in get("multi/bulk").json()
    assert get("env/A").json() == {"A": "a"}  # no scope for this store: everything allowed


def ref_component(name: str, store: str | None, **refs: tuple[str, str]) -> str:
    """A state.redis component whose metadata items are secretKeyRefs (item -> (secret, key))."""
    items = "".join(
        f"  - name: {item}\n    secretKeyRef:\n      name: {secret}\n"
        + (f"      key: {key}\n" if key else "")
        for item, (secret, key) in refs.items()
    )
    auth = f"auth:\n  secretStore: {store}\n" if store else ""
    return (
        f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n"
        f"spec:\n  type: state.redis\n  version: v1\n  metadata:\n{items}{auth}"
    )


def all_spans(home: Path) -> list[StoredSpan]:
    store = TraceStore(trace_store_path(home))
    try:
        return [span for tid in store.recent_trace_ids(100_000) for span in store.spans(tid)]
    finally:
        store.close()


def test_secret_key_refs_resolve_and_no_secret_value_leaks(
    procs: Processes, tmp_path: Path, redis_server: RedisServer
) -> None:
    value = f"leak-{secrets.token_hex(12)}"
    allowed = f"allowed-{secrets.token_hex(12)}"
    """A value the scopes let the app read: it must still appear in no span, log or file."""
    host_file = tmp_path / "redis.json"
    host_file.write_text(
        json.dumps({"redis": {"host": redis_server.address, "token": allowed}, "api": value})
    )
    folder = resource_folder(
        tmp_path,
        {
            "store.yaml": component_yaml(
                "vault", "secretstores.local.file", secretsFile=str(host_file), multiValued="true"
            ),
            "state.yaml": ref_component("cache", "vault", redisHost=("redis", "host")),
        },
    )
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.replace("localsecrets", "vault").replace('["token", "db:user"]', '["redis"]'))
    sidecar = start(procs, folder, "--config", str(config))

    # The ref was resolved: the store reaches the Redis the secret names.
    saved = httpx.post(sidecar.url("/v1.0/state/cache"), json=[{"key": "k", "value": {"v": 1}}])
    assert saved.status_code == 204
    assert httpx.get(sidecar.url("/v1.0/state/cache/k")).json() == {"v": 1}
    # An allowed secret's values travel only in the answers that ask for them (GET and bulk)...
    expected = {"host": redis_server.address, "token": allowed}
    assert httpx.get(sidecar.url("/v1.0/secrets/vault/redis")).json() == expected
    assert httpx.get(sidecar.url("/v1.0/secrets/vault/redis?metadata.k=v")).json() == expected
    assert httpx.get(sidecar.url("/v1.0/secrets/vault/bulk")).json() == {"redis": expected}
    # ...and a denied read, a missing one and a bad path never echo them.
    assert httpx.get(sidecar.url("/v1.0/secrets/vault/api")).status_code == 403
    assert httpx.get(sidecar.url("/v1.0/secrets/vault/nope")).status_code == 403
    errors = [httpx.get(sidecar.url(f"/v1.0/secrets/{p}")).text for p in ("other/redis", "vault/api")]
    assert not any(allowed in e or value in e for e in errors)
    procs.stop_all()

    spans = all_spans(procs.home)
    names = {s.name for s in spans}
    assert "GET /v1.0/secrets/{secretStoreName}/{key}" in names and "GetSecret vault" in names
    assert "BulkGetSecret vault" in names
    rendered = json.dumps([[s.name, s.attributes, s.events, s.links, s.status] for s in spans], default=str)
    assert value not in rendered and allowed not in rendered
    assert "GET /v1.0/secrets/{secretStoreName}/bulk" in names or "BulkGetSecret vault" in names
    searched: list[str] = []
    for path in [*procs.home.rglob("*"), *tmp_path.rglob("*.log")]:
        if path.is_file():
            searched.append(path.name)
            content = path.read_bytes()
            assert value.encode() not in content and allowed.encode() not in content, path
    assert any(name.startswith("sidecar-secrets-app") for name in searched), searched


def test_unresolvable_refs_stop_the_start_naming_file_component_field_and_store(
    procs: Processes, tmp_path: Path
) -> None:
    value = f"leak-{secrets.token_hex(8)}"
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"db": {"index": value}, "host": "127.0.0.1:1"}))
    store = component_yaml("vault", "secretstores.local.file", secretsFile=str(path), multiValued="true")
    cases = {
        "no-auth": (ref_component("c", None, redisHost=("host", "")), ["names no secret store", "auth"]),
        "no-store": (
            ref_component("c", "nowhere", redisHost=("host", "")),
            ["'nowhere'", "auth.secretStore"],
        ),
        "no-secret": (
            ref_component("c", "vault", redisHost=("missing", "")),
            [
                "secret 'missing' not found in secret store 'vault'",
                "spec.metadata[0].secretKeyRef.name",
                "'c'",
            ],
        ),
        "no-key": (
            ref_component("c", "vault", redisHost=("db", "nokey")),
            ["has no key 'nokey'", "spec.metadata[0].secretKeyRef.key", "Its keys: index"],
        ),
        "bad-value": (
            ref_component("c", "vault", redisHost=("host", ""), redisDB=("db", "index")),
            ["redisDB must be a whole number", "<from a secret store>"],
        ),
    }
    for case, (component, expected) in cases.items():
        folder = resource_folder(tmp_path, {"store.yaml": store, "c.yaml": component}, folder=case)
        sidecar = procs.sidecar(case, extra_args=["--resources-path", str(folder)], wait=False)
        assert sidecar.proc.wait(30) != 0
        output = sidecar.output()
        assert "c.yaml" in output, output
        for text in expected:
            assert text in output, (case, output)
        assert value not in output

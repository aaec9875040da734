"""The Configuration's pipelines: handlers run on every hop, in order; bad files stop startup."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from tests.support import Processes, component_yaml, free_port, resource_folder, wait_for_deliveries


def header_component(name: str, value: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: {name}
        spec:
          type: middleware.outrig.headers
          version: v1
          metadata:
          - name: requestHeader
            value: x-trail
          - name: value
            value: {value}
          - name: responseHeader
            value: x-trail-back
        ---
        """)


def configuration(http: list[str], app: list[str], types: dict[str, str] | None = None) -> str:
    types = types or {}

    def handlers(names: list[str]) -> str:
        if not names:
            return " []"
        return "".join(
            f"\n      - name: {n}\n        type: {types.get(n, 'middleware.outrig.headers')}" for n in names
        )

    return (
        textwrap.dedent("""\
        apiVersion: dapr.io/v1alpha1
        kind: Configuration
        metadata:
          name: pipeline
        spec:
          httpPipeline:
            handlers:""")
        + handlers(http)
        + "\n  appHttpPipeline:\n    handlers:"
        + handlers(app)
        + "\n"
    )


def write_side(folder: Path, prefix: str, with_uppercase: bool = False) -> list[str]:
    folder.mkdir()
    resources = folder / "resources"
    resources.mkdir()
    text = header_component("one", f"{prefix}1") + header_component("two", f"{prefix}2")
    text += header_component("to-app", f"{prefix}-app")
    app = ["to-app"]
    types = {}
    if with_uppercase:
        text += component_yaml("shout", "middleware.http.uppercase")
        app.append("shout")
        types["shout"] = "middleware.http.uppercase"
    (resources / "middleware.yaml").write_text(text)
    (folder / "config.yaml").write_text(configuration(["one", "two"], app, types))
    return ["--resources-path", str(resources), "--config", str(folder / "config.yaml")]


def test_configured_handlers_run_on_each_hop_in_declared_order(procs: Processes, tmp_path: Path) -> None:
    a = procs.sidecar_with_echo("front", extra_args=write_side(tmp_path / "a", "a"))
    b = procs.sidecar_with_echo("back", extra_args=write_side(tmp_path / "b", "b", with_uppercase=True))
    reply = httpx.post(a.invoke_url("back", "orders"), content=b"quiet please")
    assert reply.status_code == 200
    seen = reply.json()
    # app -> sidecar A (httpPipeline of A), sidecar A -> sidecar B (httpPipeline of B),
    # sidecar B -> app B (appHttpPipeline of B): each hop's handlers, in declared order.
    assert seen["headers"]["x-trail"] == "a1,a2,b1,b2,b-app"
    assert seen["body_prefix"] == "QUIET PLEASE"
    # On the way back the same handlers unwind, innermost first.
    assert reply.headers.get_list("x-trail-back") == ["b-app", "b2", "b1", "a2", "a1"]
    meta = httpx.get(b.url("/v1.0/metadata")).json()
    assert {c["name"] for c in meta["components"]} == {
        "one",
        "two",
        "to-app",
        "shout",
        "statestore",
        "pubsub",
    }


def start_failure(tmp_path: Path, *args: str) -> str:
    """Run `outrig run` expecting it to refuse to start; return what it printed."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "outrig.runtime",
            "run",
            "--app-id",
            "bad",
            "--dapr-http-port",
            str(free_port()),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"OUTRIG_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return proc.stderr


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  tracing: [oops\n")
    err = start_failure(tmp_path, "--config", str(config))
    assert f"{config}:5:" in err and "not valid YAML" in err


def test_unknown_middleware_name_names_file_field_and_value(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(configuration(["missing"], []))
    err = start_failure(tmp_path, "--config", str(config))
    assert f"{config}:8:" in err
    assert "field spec.httpPipeline.handlers[0].name" in err
    assert "'missing'" in err and "no middleware component with this name" in err


def test_wrong_field_type_names_file_field_and_value(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\n"
        "spec:\n  tracing:\n    samplingRate: lots\n"
    )
    err = start_failure(tmp_path, "--config", str(config))
    assert f"{config}:7:" in err
    assert "Configuration 'c'" in err and "field spec.tracing.samplingRate" in err and "'lots'" in err


def test_unknown_middleware_type_names_the_component(tmp_path: Path) -> None:
    resources = resource_folder(tmp_path, {"mw.yaml": component_yaml("odd", "middleware.http.nosuch")})
    config = tmp_path / "config.yaml"
    config.write_text(configuration(["odd"], [], {"odd": "middleware.http.nosuch"}))
    err = start_failure(tmp_path, "--resources-path", str(resources), "--config", str(config))
    assert f"{resources / 'mw.yaml'}:6:" in err
    assert "Component 'odd'" in err and "unknown middleware type 'middleware.http.nosuch'" in err


def test_bad_middleware_setting_names_component_field_and_value(tmp_path: Path) -> None:
    broken = header_component("one", "v").replace("requestHeader", "requestHeadr")
    resources = resource_folder(tmp_path, {"mw.yaml": broken})
    config = tmp_path / "config.yaml"
    config.write_text(configuration(["one"], []))
    err = start_failure(tmp_path, "--resources-path", str(resources), "--config", str(config))
    assert f"{resources / 'mw.yaml'}:" in err
    assert "Component 'one'" in err and "no setting 'requestHeadr'" in err


def test_a_state_store_that_cannot_open_names_the_component_and_the_file(tmp_path: Path) -> None:
    sqlite = component_yaml("s", "state.sqlite", databasePath=str(tmp_path))
    resources = resource_folder(tmp_path, {"state.yaml": sqlite})
    err = start_failure(tmp_path, "--resources-path", str(resources))
    assert f"{resources / 'state.yaml'}:" in err and "Component 's'" in err
    assert f"cannot open sqlite database {tmp_path}" in err


def test_unsupported_component_type_is_refused_with_a_hint(tmp_path: Path) -> None:
    resources = resource_folder(tmp_path, {"state.yaml": component_yaml("s", "state.nosuchdb")})
    err = start_failure(tmp_path, "--resources-path", str(resources))
    assert f"{resources / 'state.yaml'}:6:" in err and "'state.nosuchdb'" in err


def test_a_bad_store_setting_names_the_metadata_item_its_line_and_value(tmp_path: Path) -> None:
    redis = component_yaml("cache", "state.redis", redisHost="localhost:6379", dialTimeout=5)
    resources = resource_folder(tmp_path, {"redis.yaml": redis})
    err = start_failure(tmp_path, "--resources-path", str(resources))
    assert f"{resources / 'redis.yaml'}:12:" in err and "Component 'cache'" in err
    assert "field spec.metadata[1].value: dialTimeout must be a duration (value: 5)" in err
    assert 'e.g. "500ms" or "5s"' in err


def test_configured_handlers_run_on_publish_and_on_delivery(procs: Processes, tmp_path: Path) -> None:
    """A publish is an app -> sidecar call (httpPipeline), a delivery a sidecar -> app call
    (appHttpPipeline): the same handlers apply to them."""
    resources = resource_folder(
        tmp_path,
        {
            "middleware.yaml": header_component("to-app", "delivered")
            + component_yaml("shout", "middleware.http.uppercase"),
        },
    )
    config = tmp_path / "config.yaml"
    config.write_text(configuration(["shout"], ["to-app"], {"shout": "middleware.http.uppercase"}))
    _, port = procs.subscriber_app([{"pubsubname": "pubsub", "topic": "words", "route": "/words"}])
    sidecar = procs.sidecar(
        "talker", app_port=port, extra_args=["--resources-path", str(resources), "--config", str(config)]
    )
    assert httpx.post(sidecar.url("/v1.0/publish/pubsub/words"), json={"word": "quiet"}).status_code == 204
    got = wait_for_deliveries(port)
    assert got, "never delivered"
    assert got[0]["event"]["data"] == {"WORD": "QUIET"}, "httpPipeline ran on the publish"
    assert got[0]["headers"]["x-trail"] == "delivered", "appHttpPipeline ran on the delivery"

"""compose/, checked without a Docker engine: docker-compose.yml is valid against the Compose
specification's JSON schema (a copy in compose/compose-spec.json), and its parts agree with
each other and with outrig: the demo commands parse with outrig's own CLI, the sidecars
listen for other containers and resolve each other to their services, every sidecar is
scraped by Prometheus, the components and Configuration load and name hosts that are
services, and Grafana gets the data source uid and the dashboards folder the dashboards
expect."""

from __future__ import annotations

import copy
import json
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from jsonschema.validators import validator_for

from outrig.runtime.cli import parser
from outrig.runtime.components.redis_connection import RedisSettings
from outrig.runtime.demo.runner import SERVICES as DEMO_APPS
from outrig.runtime.demo.service import PUBSUB, STATE_STORE
from outrig.runtime.demo.stack import configuration_yaml, extra_resources
from outrig.runtime.nameresolution import NameFormatResolver
from outrig.runtime.options import SidecarOptions
from outrig.runtime.resources import load as load_resources
from outrig.runtime.sidecar import name_resolver

ROOT = Path(__file__).parent.parent
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
SCHEMA_FILE = COMPOSE_DIR / "compose-spec.json"
DASHBOARDS = ROOT / "dashboards"

DEMO_COMMAND = ["python", "-m", "outrig.runtime.demo.service"]
CHECKOUT_PATH = "/v1.0/invoke/frontend/method/checkout"


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = read_yaml(COMPOSE_FILE)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def schema_errors(doc: Any) -> list[str]:
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = validator_for(schema, default=Draft7Validator)
    cls.check_schema(schema)
    errors = sorted(cls(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def split_volume(spec: str) -> tuple[str, str]:
    """(source, target) of a short-syntax volume `source:target[:mode]`."""
    parts = spec.split(":")
    assert len(parts) in (2, 3), f"not source:target[:mode]: {spec!r}"
    return parts[0], parts[1]


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The file or folder of the repo that a bind mount of `service` shows at `container_path`."""
    wanted = PurePosixPath(container_path)
    for spec in service.get("volumes", []):
        source, target = split_volume(spec)
        if not source.startswith((".", "/")):
            continue  # a named volume
        if wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents:
            return (COMPOSE_DIR / source / wanted.relative_to(target)).resolve()
    raise AssertionError(f"nothing of the repo is mounted at {container_path}")


def sidecar_args(service: dict[str, Any]) -> tuple[Any, list[str]]:
    """The service's `outrig run` options as outrig's CLI parses them, and the app command."""
    command = service["command"]
    assert isinstance(command, list) and command[0] == "run", "the image's entrypoint is `outrig`"
    cut = command.index("--")
    try:
        args = parser().parse_args([str(c) for c in command[:cut]])
    except SystemExit as exc:  # argparse's answer to an unknown flag or a bad value
        raise AssertionError(f"`outrig {' '.join(map(str, command[:cut]))}` is refused (see stderr)") from exc
    return args, [str(c) for c in command[cut + 1 :]]


def demo_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("command", [None])[0] == "run"}


def host_and_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


def test_the_schema_catches_what_it_should() -> None:
    """The copy is the Compose spec's schema and it is in effect (not an empty schema)."""
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["title"] == "Compose Specification"
    broken = copy.deepcopy(read_yaml(COMPOSE_FILE))
    broken["services"]["redis"]["restart_policy"] = "always"
    broken["services"]["frontend"]["ports"] = "3500"
    errors = schema_errors(broken)
    assert any(e.startswith("services/redis") for e in errors), errors
    assert any(e.startswith("services/frontend/ports") for e in errors), errors


def test_compose_has_no_version_key_and_the_whole_stack(services: dict[str, dict[str, Any]]) -> None:
    assert "version" not in read_yaml(COMPOSE_FILE)
    assert {"redis", "jaeger", "prometheus", "grafana", "loadgen", *DEMO_APPS} <= set(services)
    assert services["redis"]["image"] == "redis:7"
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert services["grafana"]["image"].startswith("grafana/grafana")


def test_dependencies_name_services(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_one_service_per_demo_app_with_its_sidecar(services: dict[str, dict[str, Any]]) -> None:
    demo = demo_services(services)
    assert set(demo) == set(DEMO_APPS)
    for name, service in demo.items():
        args, app = sidecar_args(service)
        assert args.command == "run"
        assert args.app_id == name
        assert args.app_port and args.dapr_http_port == 3500
        assert args.internal_port != 0, f"{name}: peers need a fixed --internal-port"
        assert app == DEMO_COMMAND
        build = service["build"]
        assert (COMPOSE_DIR / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == COMPOSE_DIR / "Dockerfile"


def test_the_image_installs_outrig_from_the_repo() -> None:
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile
    assert 'ENTRYPOINT ["outrig"]' in dockerfile
    ignored = (COMPOSE_DIR / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_sidecars_listen_for_other_containers_and_find_each_other_by_service_name(
    services: dict[str, dict[str, Any]],
) -> None:
    demo = demo_services(services)
    for name, service in demo.items():
        args, _ = sidecar_args(service)
        assert args.dapr_listen_addresses == "0.0.0.0", (
            f"{name}: peers, Prometheus and loadgen connect from outside"
        )
        config = host_path(service, str(args.config))
        resources = load_resources([], config, name)
        options = SidecarOptions(app_id=name, internal_port=args.internal_port, home=Path("/nonexistent"))
        resolver = name_resolver(options, resources)  # as the sidecar builds it
        assert isinstance(resolver, NameFormatResolver), "the local registry cannot span containers"
        for other, other_service in demo.items():
            address = resolver.resolve(other)
            assert address is not None and address.host == other, f"{name} looks for {other} at {address}"
            other_args, _ = sidecar_args(other_service)
            assert address.port == other_args.internal_port, f"{name} looks for {other} on the wrong port"


def test_prometheus_scrapes_every_sidecar(services: dict[str, dict[str, Any]]) -> None:
    config_path = host_path(services["prometheus"], "/etc/prometheus/prometheus.yml")
    assert config_path == COMPOSE_DIR / "prometheus.yml"
    config = read_yaml(config_path)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "outrig"]
    assert job.get("scrape_interval", config["global"]["scrape_interval"]) == "5s"
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    if any("app_id" in group.get("labels", {}) for group in job["static_configs"]):
        assert job.get("honor_labels") is True, "else the sidecars' app_id becomes exported_app_id"
    wanted = set()
    for name, service in demo_services(services).items():
        args, _ = sidecar_args(service)
        wanted.add(f"{name}:{args.metrics_port}")
    assert wanted <= targets
    assert {host_and_port(t)[0] for t in targets} <= set(services)


def test_components_and_configuration_load_and_name_compose_services(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in demo_services(services).items():
        args, _ = sidecar_args(service)
        folders = [host_path(service, str(p)) for p in args.resources_path]
        config = host_path(service, str(args.config))
        assert folders == [COMPOSE_DIR / "components"] and config == COMPOSE_DIR / "config" / "config.yaml"
        resources = load_resources(folders, config, name)  # as `outrig run` does at start

        kinds = {c.name: c.type for c in resources.components}
        assert kinds.get(STATE_STORE) == "state.redis" and kinds.get(PUBSUB) == "pubsub.redis", kinds
        for component in resources.components:
            if component.type.endswith(".redis"):
                redis = RedisSettings.from_metadata(component.resource.settings())
                assert redis.host in services, f"{component.name}: redisHost {redis.address} is no service"
                assert services[redis.host]["image"].startswith("redis") and redis.port == 6379

        assert resources.configuration is not None
        tracing = resources.configuration.spec.tracing
        assert tracing is not None and tracing.samplingRate == 1 and tracing.otel is not None
        host, port = host_and_port(tracing.otel.endpointAddress)
        assert host in services and services[host]["image"].startswith("jaegertracing/jaeger")
        assert (port, tracing.otel.protocol, tracing.otel.isSecure) == (4317, "grpc", False)


def test_grafana_provisions_the_datasource_and_dashboards_the_dashboards_expect(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    assert provisioning == COMPOSE_DIR / "grafana" / "provisioning"

    sources = [
        source
        for path in sorted((provisioning / "datasources").glob("*.y*ml"))
        for source in read_yaml(path)["datasources"]
    ]
    (prometheus,) = [s for s in sources if s["type"] == "prometheus"]
    uids = set()
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
        uids.add(variable["current"]["value"])
    assert uids == {prometheus["uid"]} == {"prometheus"}
    assert prometheus["url"] == "http://prometheus:9090" and "prometheus" in services

    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for provider in read_yaml(path)["providers"]
    ]
    (provider,) = providers
    folder = provider["options"]["path"]
    assert host_path(grafana, folder) == DASHBOARDS
    assert any(spec.endswith(":ro") and split_volume(spec)[1] == folder for spec in grafana["volumes"]), (
        "mount dashboards/ read-only"
    )

    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Admin"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home).is_file()


def test_loadgen_posts_checkouts_to_frontends_sidecar(services: dict[str, dict[str, Any]]) -> None:
    args, _ = sidecar_args(services["frontend"])
    script = "\n".join(map(str, services["loadgen"]["command"]))
    assert f"http://frontend:{args.dapr_http_port}{CHECKOUT_PATH}" in script
    assert """'{"item": "espresso", "quantity": 1}'""" in script
    assert "sleep 0.5" in script
    assert "frontend" in services["loadgen"]["depends_on"]


def test_compose_runs_the_stacks_security_rate_limit_and_extra_components(
    services: dict[str, dict[str, Any]],
) -> None:
    """The same Configuration (mTLS, access control, rate limit) and components as the native
    stack, whose panels tests/test_stack.py checks, with compose's Redis and CA."""
    stack_spec = yaml.safe_load(configuration_yaml(4317))["spec"]
    compose_spec = read_yaml(COMPOSE_DIR / "config" / "config.yaml")["spec"]
    for key in ("mtls", "accessControl", "httpPipeline"):
        assert compose_spec[key] == stack_spec[key], key
    expected = extra_resources("redis:6379", "http://127.0.0.1:8001/flaky", Path("/config/secrets.json"))
    for name, text in expected.items():
        assert read_yaml(COMPOSE_DIR / "components" / name) == yaml.safe_load(text), name
    secrets_file = read_yaml(COMPOSE_DIR / "components" / "secretstore.yaml")["spec"]["metadata"][0]["value"]
    assert host_path(services["frontend"], secrets_file) == COMPOSE_DIR / "config" / "secrets.json"

    frontend_args, _ = sidecar_args(services["frontend"])
    assert frontend_args.app_port == 8001, "the flaky binding calls frontend's app in its container"
    ca_command = " ".join(services["ca"]["command"])
    assert "outrig ca init --trust-domain public --out /ca" in ca_command
    for name, service in demo_services(services).items():
        args, _ = sidecar_args(service)
        assert str(args.ca_dir) == "/ca" and "ca:/ca:ro" in service["volumes"], name
        assert service["depends_on"]["ca"]["condition"] == "service_completed_successfully", name
    assert "ca" in read_yaml(COMPOSE_FILE)["volumes"]
    script = "\n".join(map(str, services["loadgen"]["command"]))
    for path in ("/v1.0/bindings/flaky", "/v1.0-alpha1/lock/lockstore", "/method/ping", "/stock/espresso"):
        assert path in script, path

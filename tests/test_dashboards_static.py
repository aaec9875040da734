"""The Grafana dashboards in dashboards/, checked without Grafana: each is JSON Grafana 10/11
provisions, panel ids are unique, every panel queries Prometheus, every query uses only the
metrics outrig exposes and filters on the `app_id` variable, and latency panels link to Jaeger.

`panel_queries` and `concrete` are for tests that run every query against a real Prometheus:
`[concrete(expr) for _, _, expr in panel_queries(path)]` are plain PromQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
DASHBOARDS = ROOT / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS.glob("*.json"))
EXPECTED_FILES = {"mesh-overview.json", "sidecar.json", "building-blocks.json"}

METRICS = frozenset(
    {
        "outrig_call_duration_seconds_bucket",
        "outrig_call_duration_seconds_sum",
        "outrig_call_duration_seconds_count",
        "outrig_calls_active",
        "outrig_pubsub_deliveries_total",
        "outrig_pubsub_backlog",
        "outrig_component_up",
        "outrig_ratelimit_decisions_total",
        "outrig_ratelimit_store_up",
        "outrig_breaker_state",
        "outrig_breaker_transitions_total",
        "outrig_mtls_certificate_expiry_seconds",
        "process_cpu_time_seconds_total",
        "process_memory_usage_bytes",
    }
)
"""Every series outrig's sidecar exposes on its metrics port (besides the exporter's own)."""

PROMETHEUS_UID = "prometheus"
"""The uid compose/ provisions the Prometheus data source with; the default of `$datasource`."""
APP_FILTER = 'app_id=~"$app_id"'
APP_VARIABLE_QUERY = "label_values(outrig_call_duration_seconds_count, app_id)"
JAEGER_SEARCH = "${jaeger_url}/search?service="

SUBSTITUTIONS = {"app_id": ".*", "__rate_interval": "1m", "__interval": "1m", "__range": "5m"}
"""What `concrete` puts in place of each variable a query may use."""

# PromQL words that are not metric names. Functions and aggregations are recognised by the
# "(" after them; these are the operators and modifiers that can stand without one.
KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "atan2", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?=(\s*\()?)")
_VARIABLE = re.compile(r"\$(?:\{([a-zA-Z_]\w*)\}|([a-zA-Z_]\w*))")


def load(path: Path) -> dict[str, Any]:
    board = json.loads(path.read_text())
    assert isinstance(board, dict)
    return board


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data: rows left out, the panels of collapsed rows included."""
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            yield from panels(panel)
        else:
            yield panel


def all_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included (for ids and layout)."""
    for panel in board.get("panels", []):
        yield panel
        yield from all_panels(panel)


def panel_queries(path: Path) -> list[tuple[str, str, str]]:
    """(dashboard title, panel title, expr) for every query of every panel of a dashboard."""
    board = load(path)
    return [
        (board["title"], panel["title"], target["expr"])
        for panel in panels(board)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def concrete(expr: str) -> str:
    """`expr` as plain PromQL: Grafana's variables replaced as Grafana would with `app_id` on
    All, a 1m rate interval and a 5m range. An unknown variable is an error."""

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in SUBSTITUTIONS:
            raise ValueError(f"unknown variable ${name} in {expr!r}")
        return SUBSTITUTIONS[name]

    return _VARIABLE.sub(value, expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, matchers, ranges and grouping
    labels are ignored; a name followed by "(" is a function or an aggregation)."""
    text = _MATCHERS.sub("{}", _mask(expr))
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub("[]", text)
    return {
        match[1] for match in _IDENTIFIER.finditer(text) if not match[2] and match[1].lower() not in KEYWORDS
    }


def selectors(expr: str, metric: str) -> list[str]:
    """The label matchers of each place `expr` selects `metric` ("" where it has none)."""
    pattern = re.compile(rf"(?<![\w:.$]){re.escape(metric)}(?![\w:])(?:\s*\{{([^}}]*)\}})?")
    return [expr[m.start(1) : m.end(1)] if m[1] else "" for m in pattern.finditer(_mask(expr))]


def _mask(expr: str) -> str:
    """`expr` with the insides of its string literals hidden, every offset kept."""
    return _STRING.sub(lambda m: m[0][0] + " " * (len(m[0]) - 2) + m[0][-1], expr)


def variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board.get("templating", {}).get("list", [])}


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query")
    return str(query.get("query", "")) if isinstance(query, dict) else str(query)


def data_links(panel: dict[str, Any]) -> list[dict[str, Any]]:
    config = panel.get("fieldConfig", {})
    links: list[dict[str, Any]] = list(config.get("defaults", {}).get("links", []))
    for override in config.get("overrides", []):
        for prop in override.get("properties", []):
            if prop.get("id") == "links":
                links.extend(prop["value"])
    return links


def exprs(panel: dict[str, Any]) -> list[str]:
    return [target.get("expr", "") for target in panel.get("targets", [])]


boards = pytest.mark.parametrize("path", DASHBOARD_FILES, ids=[p.stem for p in DASHBOARD_FILES])


def test_the_three_dashboards_are_there() -> None:
    assert {p.name for p in DASHBOARD_FILES} == EXPECTED_FILES


def test_uids_and_titles_are_unique() -> None:
    loaded = [load(p) for p in DASHBOARD_FILES]
    assert len({b["uid"] for b in loaded}) == len(loaded)
    assert len({b["title"] for b in loaded}) == len(loaded)


@boards
def test_is_a_dashboard_grafana_provisions(path: Path) -> None:
    board = load(path)
    assert board["title"] and board["uid"] and len(board["uid"]) <= 40
    assert 36 <= board["schemaVersion"] <= 41, "Grafana 10/11 schema"
    assert board.get("id") is None, "a provisioned dashboard must not carry a database id"
    assert "outrig" in board["tags"]
    assert board["panels"], "no panels"


@boards
def test_panel_ids_are_unique_and_panels_fit_the_grid(path: Path) -> None:
    every = list(all_panels(load(path)))
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    for panel in every:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        assert pos["h"] > 0 and pos["y"] >= 0, panel["title"]


@boards
def test_every_panel_queries_prometheus_through_the_datasource_variable(path: Path) -> None:
    for panel in panels(load(path)):
        assert panel.get("title"), f"panel {panel['id']} has no title"
        assert panel["targets"], f"{panel['title']!r} has no query"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"{panel['title']!r} has a query without expr"
            assert target["datasource"] == panel["datasource"], panel["title"]


@boards
def test_queries_use_only_metrics_outrig_exposes(path: Path) -> None:
    for _, title, expr in panel_queries(path):
        names = metric_names(expr)
        assert names, f"{title!r}: no metric in {expr!r}"
        assert names <= METRICS, f"{title!r}: unknown metrics {sorted(names - METRICS)} in {expr!r}"


@boards
def test_every_selector_filters_on_the_app_id_variable(path: Path) -> None:
    for _, title, expr in panel_queries(path):
        for metric in metric_names(expr):
            for matchers in selectors(expr, metric):
                assert APP_FILTER in matchers, f"{title!r}: {metric} without {APP_FILTER} in {expr!r}"


@boards
def test_rates_use_grafana_intervals_and_only_known_variables(path: Path) -> None:
    for _, title, expr in panel_queries(path):
        for window in _RANGE.findall(_mask(expr)):
            assert window in ("[$__rate_interval]", "[$__range]"), f"{title!r}: fixed window {window}"
        concrete(expr)  # raises on a variable it does not know


@boards
def test_defines_datasource_app_id_and_jaeger_url_variables(path: Path) -> None:
    found = variables(load(path))
    datasource = found["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    assert datasource["current"]["value"] == PROMETHEUS_UID

    app_id = found["app_id"]
    assert app_id["type"] == "query"
    assert variable_query(app_id) == APP_VARIABLE_QUERY
    assert app_id["multi"] is True and app_id["includeAll"] is True
    assert app_id["datasource"] == {"type": "prometheus", "uid": "${datasource}"}

    jaeger = found["jaeger_url"]
    assert jaeger["type"] in ("textbox", "constant")
    assert jaeger["query"] == "http://localhost:16686"


@boards
def test_latency_panels_link_each_series_to_its_traces_in_jaeger(path: Path) -> None:
    latency = [
        p
        for p in panels(load(path))
        if p["type"] != "stat" and any("histogram_quantile" in e for e in exprs(p))
    ]
    assert latency, "no latency panel"
    for panel in latency:
        urls = [link["url"] for link in data_links(panel)]
        assert any(url.startswith(JAEGER_SEARCH) for url in urls), f"{panel['title']!r} has no Jaeger link"
        for url in urls:
            service = url.removeprefix(JAEGER_SEARCH).split("&")[0]
            assert service in ("${__field.labels.app_id}", "${__data.fields.app_id}"), url
        for expr in exprs(panel):
            # The link's service is the series' app_id: the quantile must keep that label.
            for grouping in re.findall(r"histogram_quantile\([^,]+,\s*sum by \(([^)]*)\)", expr):
                assert "app_id" in grouping.replace(" ", "").split(","), f"{panel['title']!r}: {expr!r}"


def test_readme_names_every_dashboard_and_metric() -> None:
    readme = (DASHBOARDS / "README.md").read_text()
    histogram = "outrig_call_duration_seconds"
    for name in [p.name for p in DASHBOARD_FILES] + [histogram] + [m for m in METRICS if histogram not in m]:
        assert name in readme, name


def test_panel_queries_lists_every_target() -> None:
    for path in DASHBOARD_FILES:
        board = load(path)
        queries = panel_queries(path)
        assert len(queries) == sum(len(p["targets"]) for p in panels(board))
        assert {title for title, _, _ in queries} == {board["title"]}


def test_concrete_substitutes_grafana_variables() -> None:
    expr = (
        'sum by (app_id) (rate(m_count{app_id=~"$app_id"}[$__rate_interval]))'
        ' + sum(increase(m_count{app_id=~"${app_id}"}[$__range])) + avg_over_time(g[$__interval])'
    )
    assert concrete(expr) == (
        'sum by (app_id) (rate(m_count{app_id=~".*"}[1m]))'
        ' + sum(increase(m_count{app_id=~".*"}[5m])) + avg_over_time(g[1m])'
    )
    assert concrete('label_replace(m, "a", "$1", "b", "(.*)")') == 'label_replace(m, "a", "$1", "b", "(.*)")'
    with pytest.raises(ValueError, match="unknown variable"):
        concrete('m{hop=~"$hop"}')


def test_metric_names_finds_selected_metrics_only() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, app_id) (rate(a_bucket{app_id=~"$app_id", x="y{z"}[5m])))'
    ) == {"a_bucket"}
    assert metric_names("(sum(rate(a[1m])) or b * 0) / on (app_id) group_left c offset 5m") == {"a", "b", "c"}
    assert metric_names('label_replace(up, "dst", "x", "src", "state[.].*")') == {"up"}
    assert metric_names("max without (mode) (cpu_seconds_total) > bool 1e3") == {"cpu_seconds_total"}


def test_selectors_reports_each_place_a_metric_is_selected() -> None:
    expr = 'a{app_id=~"$app_id"} or a or sum(a {x="a{"}) or ab{y="1"}'
    assert selectors(expr, "a") == ['app_id=~"$app_id"', "", 'x="a{"']

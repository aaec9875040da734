"""Pictures of a real run for the docs: `scripts/snapshot`.

Starts the native observability stack (`Stack`: Redis, Jaeger, Prometheus and the three demo
services behind their sidecars), sends checkouts for `--seconds`, then draws, as plain SVG:

- `trace.svg`: one complete traced checkout (16 spans) from Jaeger's API as a waterfall, one
  row per span, indented by depth, each bar placed and scaled by its start and duration;
  of the complete traces it looks at, the one of median duration.
- `dashboard-<uid>.svg` for each `dashboards/*.json`: its panels on Grafana's 24-column grid,
  each time series drawn from Prometheus' `query_range` over the run (the query made concrete
  as Grafana would: `app_id` on All, `$__interval` the step, `$__rate_interval` by Grafana's
  rule for the stack's 2 s scrape interval, `$__range` the run), stat panels as their last
  value, the table as its rows.

Everything it starts is stopped at the end.

    .venv/bin/python -m outrig.runtime.demo.snapshot --out docs/images [--seconds 60]

`--save-data FILE` keeps what it fetched (the trace and every query's answer) as JSON, and
`--from-data FILE` draws from such a file without starting anything.
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import math
import re
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from .stack import Stack, StackError, TracedCheckout, dashboards_dir

CHECKOUT_SPANS = 16
"""A placed order's trace in Jaeger: invoke frontend -> orders -> inventory, the state save,
the publish and its delivery (tests/test_stack.py's CHECKOUT_TRACE)."""
SETTLE_SECONDS = 3.0
"""After the traffic stops: the last spans are exported (every second) and scraped."""
TRACES_LOOKED_AT = 40
MAX_SERIES = 8
WIDTH = 1200

# --- collecting -----------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def rate_interval(step: float, scrape_interval: float) -> float:
    """Grafana's `$__rate_interval`: max(`$__interval` + scrape interval, 4 x scrape interval)."""
    return max(step + scrape_interval, 4 * scrape_interval)


def collect(seconds: float, step: float, rate_window: float | None, boards: Sequence[Path]) -> dict[str, Any]:
    """Run the stack under traffic for `seconds` and fetch what the pictures need."""
    print("snapshot: starting Redis, Jaeger, Prometheus and three services with their sidecars...")
    with Stack(grafana=False) as stack:
        traffic = stack.traffic().start()
        started = time.time()
        print(f"snapshot: sending checkouts for {seconds:g} s", flush=True)
        deadline = time.monotonic() + seconds
        report = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(max(0.0, min(0.5, deadline - time.monotonic())))
            stack.check()
            if time.monotonic() >= report:
                report += 10
                print(f"  {traffic.summary()}", flush=True)
        traffic.stop()
        ended = time.time()
        print(f"  {traffic.summary()}")
        time.sleep(SETTLE_SECONDS + stack.scrape_interval)
        window = rate_window or rate_interval(step, stack.scrape_interval)
        with httpx.Client(timeout=10) as client:
            trace, looked_at = pick_trace(client, stack.jaeger_url, list(traffic.placed_traces))
            dashboards = [
                query_dashboard(client, stack.prometheus_url, path, (started, ended), step, window)
                for path in boards
            ]
        return {
            "seconds": seconds,
            "step": step,
            "rate_interval": window,
            "scrape_interval": stack.scrape_interval,
            "started": started,
            "ended": ended,
            "traffic": traffic.summary(),
            "errors": traffic.errors[:10],
            "traces_looked_at": looked_at,
            "trace": trace,
            "dashboards": dashboards,
        }


def pick_trace(
    client: httpx.Client, jaeger_url: str, placed: Sequence[TracedCheckout]
) -> tuple[dict[str, Any], dict[str, int]]:
    """Of up to TRACES_LOOKED_AT placed orders spread over the run, the complete trace of
    median duration (or, if none is complete, the one with the most spans); and a count of
    the traces looked at by number of spans."""
    if not placed:
        raise StackError("no traced checkout was placed: nothing to draw")
    every = max(1, len(placed) // TRACES_LOOKED_AT)
    counts: dict[str, int] = {}
    complete: list[dict[str, Any]] = []
    partial: list[dict[str, Any]] = []
    for checkout in list(placed)[::every][:TRACES_LOOKED_AT]:
        reply = client.get(f"{jaeger_url}/api/traces/{checkout.trace_id}")
        data = reply.json().get("data") if reply.status_code == 200 else None
        if not data:
            counts["not found"] = counts.get("not found", 0) + 1
            continue
        trace = data[0]
        spans = len(trace["spans"])
        counts[f"{spans} spans"] = counts.get(f"{spans} spans", 0) + 1
        (complete if spans == CHECKOUT_SPANS else partial).append(trace)
    if complete:
        complete.sort(key=lambda t: _root(t["spans"])["duration"])
        return complete[len(complete) // 2], counts
    if not partial:
        raise StackError(f"Jaeger has none of the traced checkouts ({counts})")
    return max(partial, key=lambda t: len(t["spans"])), counts


def promql(expr: str, range_seconds: float, step: float, rate_window: float) -> str:
    """`expr` with Grafana's variables replaced as Grafana would (tests/test_dashboards_static.py's
    `concrete`, with this run's intervals): `app_id` on All, `$__interval` the step,
    `$__rate_interval` `rate_window` and `$__range` the run."""
    values = {
        "app_id": ".*",
        "__rate_interval": f"{rate_window:g}s",
        "__interval": f"{step:g}s",
        "__range": f"{max(1, round(range_seconds))}s",
    }

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in values:
            raise ValueError(f"unknown variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$(?:\{([a-zA-Z_]\w*)\}|([a-zA-Z_]\w*))", value, expr)


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, with the panels of collapsed rows."""
    for panel in board.get("panels", []):
        yield panel
        yield from panels(panel)


def query_dashboard(
    client: httpx.Client,
    prometheus_url: str,
    path: Path,
    run: tuple[float, float],
    step: float,
    rate_window: float,
) -> dict[str, Any]:
    """The dashboard's JSON and, per `<panel id>/<refId>`, Prometheus' answer to the query:
    a range over [start, end], or at `end` for an instant (table) query."""
    board = json.loads(path.read_text())
    start, end = run
    results: dict[str, Any] = {}
    for panel in panels(board):
        for target in panel.get("targets", []):
            if not target.get("expr"):
                continue
            key = f"{panel['id']}/{target['refId']}"
            try:
                query = promql(target["expr"], end - start, step, rate_window)
            except ValueError as exc:
                results[key] = {"error": str(exc)}
                continue
            if target.get("instant") or target.get("format") == "table":
                params: dict[str, Any] = {"query": query, "time": end}
                reply = client.get(f"{prometheus_url}/api/v1/query", params=params)
            else:
                params = {"query": query, "start": start, "end": end, "step": step}
                reply = client.get(f"{prometheus_url}/api/v1/query_range", params=params)
            answer = reply.json()
            results[key] = (
                answer["data"] if answer.get("status") == "success" else {"error": answer.get("error")}
            )
    return {"file": path.name, "board": board, "results": results}


# --- SVG helpers ----------------------------------------------------------------------------

SANS = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
INK = "#1f2328"
MUTED = "#656d76"
LINE = "#d0d7de"
GRID = "#eaeef2"
PAPER = "#f6f8fa"
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#9c755f", "#edc948")
SERVICE_COLOURS = {"frontend": "#4e79a7", "orders": "#f28e2b", "inventory": "#59a14f"}
THRESHOLD_COLOURS = {"green": "#1a7f37", "orange": "#d4760a", "red": "#cf222e", "yellow": "#bf8700"}


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def text(
    x: float, y: float, content: str, size: float = 11, fill: str = INK, anchor: str = "start", **extra: str
) -> str:
    attrs = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in extra.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size:g}" fill="{fill}" '
        f'text-anchor="{anchor}"{attrs}>{esc(content)}</text>'
    )


def fit(content: str, width: float, size: float, mono: bool = False) -> str:
    """`content` cut with an ellipsis to about `width` pixels at `size`."""
    per_char = size * (0.61 if mono else 0.58)
    most = max(1, int(width / per_char))
    return content if len(content) <= most else content[: max(0, most - 1)] + "…"


def svg(width: float, height: float, body: list[str], font: str = SANS) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{font}">\n'
        f'<rect width="100%" height="100%" fill="{PAPER}"/>\n' + "\n".join(body) + "\n</svg>\n"
    )


def nice_step(span: float, ticks: int) -> float:
    """A round tick step (1, 2, 2.5, 5 x 10^k) giving about `ticks` ticks over `span`."""
    raw = span / max(1, ticks)
    if raw <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * power >= value * 0.9999)


def axis_max(value: float, unit: str | None) -> float:
    """A round top for an axis showing up to `value` (binary steps for bytes)."""
    if unit == "bytes":
        factor = next((f for f in (2**30, 2**20, 2**10) if value >= f), 1)
        return nice_ceiling(value / factor) * factor
    return nice_ceiling(value)


def number(value: float) -> str:
    if value == 0:
        return "0"
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    if size >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def formatted(value: float, unit: str | None) -> str:
    """`value` as Grafana shows it in `unit` (the few units the dashboards use)."""
    if not math.isfinite(value):
        return "-"
    if unit == "percentunit":
        return f"{number(value * 100)}%"
    if unit == "s":
        if value == 0:
            return "0 s"
        if abs(value) < 1e-3:
            return f"{number(value * 1e6)} µs"
        return f"{number(value * 1e3)} ms" if abs(value) < 1 else f"{number(value)} s"
    if unit == "bytes":
        for factor, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= factor:
                return f"{number(value / factor)} {name}"
        return f"{number(value)} B"
    suffix = {"reqps": " req/s", "ops": " ops/s"}.get(unit or "", "")
    return number(value) + suffix


# --- the trace ------------------------------------------------------------------------------


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span.get("tags", [])}


def _parent(span: dict[str, Any]) -> str | None:
    refs = [r["spanID"] for r in span.get("references", []) if r.get("refType") == "CHILD_OF"]
    return refs[0] if refs else None


def _root(spans: list[dict[str, Any]]) -> dict[str, Any]:
    ids = {s["spanID"] for s in spans}
    roots = [s for s in spans if _parent(s) not in ids]
    return min(roots or spans, key=lambda s: s["startTime"])


def tree(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(depth, span) in depth-first order, children by start time; orphans as roots."""
    ids = {s["spanID"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = _parent(span)
        children.setdefault(parent if parent in ids else None, []).append(span)
    ordered: list[tuple[int, dict[str, Any]]] = []

    def visit(span: dict[str, Any], depth: int) -> None:
        ordered.append((depth, span))
        for child in sorted(children.get(span["spanID"], []), key=lambda s: s["startTime"]):
            visit(child, depth + 1)

    for root in sorted(children.get(None, []), key=lambda s: s["startTime"]):
        visit(root, 0)
    return ordered


def detail(span: dict[str, Any]) -> str:
    """What the span's name leaves out: the sidecar hop, the concrete path, store or topic,
    and the outcome."""
    tags = _tags(span)
    where = str(tags.get("url.path") or "")
    if not where and tags.get("url.full"):
        where = re.sub(r"^[a-z]+://[^/]+", "", str(tags["url.full"]))
    if not where and tags.get("db.operation.name"):
        system, namespace = tags.get("db.system.name", "db"), tags.get("db.namespace", "")
        where = f"{system} {tags['db.operation.name']}, db {namespace}"
    if not where and tags.get("messaging.destination.name"):
        where = f"{tags.get('messaging.system', '')} topic {tags['messaging.destination.name']}".strip()
    outcome = tags.get("http.response.status_code") or tags.get("outrig.pubsub.outcome")
    hop = tags.get("outrig.hop")
    return (f"{hop}: " if hop else "") + where + (f" → {outcome}" if outcome else "")


def _ms(micros: float) -> str:
    ms = micros / 1000
    return f"{ms:.2f} ms" if ms < 100 else f"{ms:.0f} ms"


def on(colour: str) -> str:
    """Ink readable on a `colour` (#rrggbb) background: white on dark, dark on light."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return INK if luminance > 0.2 else "#ffffff"


def _colour(service: str) -> str:
    return SERVICE_COLOURS.get(service, PALETTE[sum(map(ord, service)) % len(PALETTE)])


def render_trace(trace: dict[str, Any], summary: str = "") -> str:
    spans: list[dict[str, Any]] = trace["spans"]
    service = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
    rows = tree(spans)
    begin = min(s["startTime"] for s in spans)
    end = max(s["startTime"] + s["duration"] for s in spans)
    total = max(1, end - begin)
    root = _root(spans)

    row_h, top, left = 22, 100, 12
    bars_x, bars_w = 640, WIDTH - 640 - 16
    height = top + row_h * len(rows) + 34
    body: list[str] = []
    when = datetime.datetime.fromtimestamp(begin / 1e6, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    services = list(dict.fromkeys(service[s["processID"]] for _, s in rows))
    answer = "" if root["duration"] == total else f", the checkout answered after {_ms(root['duration'])}"
    body.append(text(left, 26, "A checkout's trace, from Jaeger's API", 16, font_weight="bold"))
    body.append(
        text(
            left,
            46,
            f"trace {trace['traceID']}  ·  {len(spans)} spans over {len(services)} services  ·  "
            f"{_ms(total)} from first span to last{answer}  ·  {when}",
            11.5,
            MUTED,
        )
    )
    if summary:
        body.append(text(left, 64, f"One of {summary} (scripts/snapshot)", 11.5, MUTED))
    x = WIDTH - 16.0
    for name in reversed(services):
        x -= len(name) * 7 + 30
        body.append(f'<rect x="{x:.0f}" y="15" width="12" height="12" rx="2" fill="{_colour(name)}"/>')
        body.append(text(x + 17, 25.5, name, 12))

    # time axis and grid over the bars
    step = nice_step(total / 1000, 8)
    axis_y = top - 8
    body.append(text(left, axis_y, "service, span kind, span name", 11, MUTED, font_weight="bold"))
    body.append(text(bars_x - 12, axis_y, "duration", 11, MUTED, "end", font_weight="bold"))
    tick = 0.0
    while tick <= total / 1000 + 1e-9:
        tx = bars_x + tick * 1000 / total * bars_w
        body.append(text(tx, axis_y, f"{tick:g} ms", 10.5, MUTED, "middle" if tick else "start"))
        body.append(f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{height - 30}" stroke="{GRID}"/>')
        tick += step
    for i, (depth, span) in enumerate(rows):
        y = top + i * row_h
        name = service[span["processID"]]
        colour = _colour(name)
        tags = _tags(span)
        if i % 2:
            body.append(f'<rect x="4" y="{y}" width="{WIDTH - 8}" height="{row_h}" fill="#eef1f4"/>')
        kind = str(tags.get("span.kind", "internal"))
        indent = left + depth * 14
        room = bars_x - 80 - indent - 9 - (len(name) + len(kind) + 2) * 7
        body.append(f'<rect x="{indent}" y="{y + 6}" width="4" height="{row_h - 12}" fill="{colour}"/>')
        body.append(
            f'<text x="{indent + 9}" y="{y + 15}" font-size="11.5" font-family="{MONO}" fill="{INK}">'
            f'<tspan font-weight="bold">{esc(name)}</tspan> <tspan fill="{MUTED}">{esc(kind)}</tspan> '
            f"{esc(fit(span['operationName'], room, 11.5, mono=True))}</text>"
        )
        body.append(text(bars_x - 12, y + 15, _ms(span["duration"]), 11.5, MUTED, "end", font_family=MONO))
        bx = bars_x + (span["startTime"] - begin) / total * bars_w
        bw = max(1.5, span["duration"] / total * bars_w)
        failed = tags.get("otel.status_code") == "ERROR" or tags.get("error") is True
        stroke = ' stroke="#cf222e" stroke-width="1.5"' if failed else ""
        body.append(
            f'<rect x="{bx:.1f}" y="{y + 4}" width="{bw:.1f}" height="{row_h - 8}" rx="2" '
            f'fill="{colour}"{stroke}/>'
        )
        more = detail(span)
        wide = len(more) * 10.5 * 0.58 + 12
        room_right = bars_x + bars_w - (bx + bw) - 6
        room_left = bx - bars_x - 6
        if more and bw >= wide:
            body.append(text(bx + 6, y + 15, more, 10.5, on(colour)))
        elif more and room_right >= min(wide, room_left):
            body.append(text(bx + bw + 5, y + 15, fit(more, room_right, 10.5), 10.5, MUTED))
        elif more:
            body.append(text(bx - 5, y + 15, fit(more, room_left, 10.5), 10.5, MUTED, "end"))
    body.append(
        text(
            left,
            height - 10,
            "Bars: when each span ran, in ms from the trace's first span. Indent: parent → child. "
            "On or beside a bar: the sidecar hop, the concrete path, store or topic, and the outcome.",
            10.5,
            MUTED,
        )
    )
    return svg(WIDTH, height, body)


# --- the dashboards -------------------------------------------------------------------------


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]
    """(unix time, value); NaN where Prometheus had no value."""

    @property
    def finite(self) -> list[float]:
        return [v for _, v in self.points if math.isfinite(v)]

    @property
    def last(self) -> float:
        values = self.finite
        return values[-1] if values else math.nan


_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_]\w*)\s*\}\}")


def filled(fmt: str, labels: dict[str, str], leave_out: set[str] | None = None) -> str:
    """A legend format with each `{{label}}` replaced by its value ("" for those left out)."""
    return _PLACEHOLDER.sub(lambda m: "" if m[1] in (leave_out or ()) else labels.get(m[1], ""), fmt)


def legend_names(entries: list[tuple[str, dict[str, str]]]) -> list[str]:
    """Each series' name from its legend format and labels, leaving out the label values all
    the panel's series share (they tell nothing) unless that leaves a name empty."""
    placeholders = {name for fmt, _ in entries for name in _PLACEHOLDER.findall(fmt)}
    shared = {name for name in placeholders if len({labels.get(name, "") for _, labels in entries}) == 1}
    names = []
    for fmt, labels in entries:
        if not fmt or fmt == "__auto":
            shown = {k: v for k, v in labels.items() if k != "__name__"}
            names.append(", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value")
            continue
        full = filled(fmt, labels)
        short = filled(fmt, labels, shared)
        short = re.sub(r"\s+", " ", short).strip(" →")
        names.append(short if len(entries) > 1 and short else re.sub(r"\s+", " ", full).strip())
    # A word every name starts with ("p99" in a p99 panel) is the panel's title's business.
    while len(names) > 1 and all(" " in n for n in names) and len({n.split(" ")[0] for n in names}) == 1:
        names = [n.split(" ", 1)[1] for n in names]
    return names


def panel_series(panel: dict[str, Any], results: dict[str, Any]) -> tuple[list[Series], list[str]]:
    """The panel's series over all its queries, and the errors of queries that failed."""
    entries: list[tuple[str, dict[str, str]]] = []
    raw: list[list[tuple[float, float]]] = []
    errors = []
    for target in panel.get("targets", []):
        answer = results.get(f"{panel['id']}/{target['refId']}")
        if answer is None:
            continue
        if "error" in answer:
            errors.append(str(answer["error"]))
            continue
        for result in answer.get("result", []):
            if "values" in result:
                points = [(float(t), float(v)) for t, v in result["values"]]
            else:
                points = [(float(result["value"][0]), float(result["value"][1]))]
            entries.append((target.get("legendFormat", ""), result.get("metric", {})))
            raw.append(points)
    names = legend_names(entries)
    return [Series(name, points) for name, points in zip(names, raw, strict=True)], errors


def unit_of(panel: dict[str, Any]) -> str | None:
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
    return str(unit) if unit else None


def threshold_colour(panel: dict[str, Any], value: float) -> str:
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    colour = "green"
    for step in steps:
        if step.get("value") is None or (math.isfinite(value) and value >= step["value"]):
            colour = step.get("color", colour)
    return THRESHOLD_COLOURS.get(colour, colour if colour.startswith("#") else INK)


def mapped(panel: dict[str, Any], value: float) -> str:
    for mapping in panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
        if mapping.get("type") == "value" and math.isfinite(value):
            key = f"{value:g}"
            if key in mapping.get("options", {}):
                return str(mapping["options"][key].get("text", key))
    return formatted(value, unit_of(panel))


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float


def draw_timeseries(
    panel: dict[str, Any], box: Box, series: list[Series], run: tuple[float, float]
) -> list[str]:
    body: list[str] = []
    unit = unit_of(panel)
    shown = sorted(series, key=lambda s: max(s.finite, default=-math.inf), reverse=True)[:MAX_SERIES]
    hidden = len(series) - len(shown)
    # Two legend columns on a wide panel, unless that would cut the names.
    longest = max((len(one.name) for one in shown), default=0)
    columns = 2 if box.w >= 560 and longest * 5.8 + 110 < (box.w - 20) / 2 else 1
    legend_rows = math.ceil(len(shown) / columns) + (1 if hidden else 0)
    legend_h = legend_rows * 13 + 6
    plot = Box(box.x + 56, box.y + 30, box.w - 56 - 12, box.h - 30 - 20 - legend_h)
    values = [v for s in shown for v in s.finite]
    if not values:
        body.append(text(box.x + box.w / 2, box.y + box.h / 2, "No data", 13, MUTED, "middle"))
        return body
    low = min(0.0, min(values))
    high = max(values)
    configured = panel.get("fieldConfig", {}).get("defaults", {})
    if isinstance(configured.get("max"), (int, float)) and configured["max"] >= high:
        high = float(configured["max"])
    high = axis_max(high * 1.06, unit) if high > low else low + (1.0 if unit != "percentunit" else 0.01)
    start, end = run
    span = max(1.0, end - start)

    def px(t: float) -> float:
        return plot.x + (t - start) / span * plot.w

    def py(v: float) -> float:
        return plot.y + plot.h - (v - low) / (high - low) * plot.h

    for fraction in (0.0, 0.5, 1.0):
        value = low + (high - low) * fraction
        gy = py(value)
        body.append(
            f'<line x1="{plot.x:.1f}" y1="{gy:.1f}" x2="{plot.x + plot.w:.1f}" y2="{gy:.1f}" '
            f'stroke="{LINE if fraction == 0 else GRID}"/>'
        )
        body.append(text(plot.x - 5, gy + 3.5, formatted(value, unit), 10, MUTED, "end"))
    step = nice_step(span, 4)
    tick = 0.0
    while tick <= span + 1e-6:
        tx = px(start + tick)
        body.append(
            f'<line x1="{tx:.1f}" y1="{plot.y + plot.h:.1f}" x2="{tx:.1f}" y2="{plot.y + plot.h + 3:.1f}" '
            f'stroke="{LINE}"/>'
        )
        body.append(text(tx, plot.y + plot.h + 14, f"{tick:g} s", 9.5, MUTED, "middle"))
        tick += step
    for i, one in enumerate(shown):
        colour = PALETTE[i % len(PALETTE)]
        segments: list[list[str]] = [[]]
        for t, v in one.points:
            if math.isfinite(v):
                segments[-1].append(f"{px(t):.1f},{py(v):.1f}")
            elif segments[-1]:
                segments.append([])
        for segment in segments:
            if len(segment) == 1:
                x, y = segment[0].split(",")
                body.append(f'<circle cx="{x}" cy="{y}" r="1.8" fill="{colour}"/>')
            elif segment:
                body.append(
                    f'<polyline points="{" ".join(segment)}" fill="none" stroke="{colour}" '
                    f'stroke-width="1.6" stroke-linejoin="round"/>'
                )
    legend_y = box.y + box.h - legend_h + 8
    column_w = (box.w - 20) / columns
    for i, one in enumerate(shown):
        lx = box.x + 10 + (i % columns) * column_w
        ly = legend_y + (i // columns) * 13
        last = "last " + formatted(one.last, unit)
        body.append(f'<rect x="{lx:.1f}" y="{ly - 3:.1f}" width="10" height="3" fill="{PALETTE[i % 8]}"/>')
        name_w = column_w - 16 - len(last) * 5.6 - 10
        body.append(text(lx + 14, ly + 1, fit(one.name, name_w, 10), 10))
        body.append(text(lx + column_w - 8, ly + 1, last, 10, MUTED, "end"))
    if hidden:
        ly = legend_y + (legend_rows - 1) * 13
        body.append(text(box.x + 24, ly + 1, f"+ {hidden} more series (lower values)", 10, MUTED))
    return body


def draw_stat(panel: dict[str, Any], box: Box, series: list[Series]) -> list[str]:
    body: list[str] = []
    if not series:
        return [text(box.x + box.w / 2, box.y + box.h / 2 + 8, "No data", 13, MUTED, "middle")]
    background = panel.get("options", {}).get("colorMode") == "background"
    if len(series) == 1 and not background:
        one = series[0]
        colour = threshold_colour(panel, one.last)
        values = one.finite
        area = Box(box.x + 8, box.y + box.h * 0.55, box.w - 16, box.h * 0.45 - 6)
        if panel.get("options", {}).get("graphMode") == "area" and len(values) > 1:
            low, high = min(values), max(values)
            high = high if high > low else low + 1
            start, end = one.points[0][0], one.points[-1][0]
            pts = [
                f"{area.x + (t - start) / max(1, end - start) * area.w:.1f},"
                f"{area.y + area.h - (v - low) / (high - low) * area.h:.1f}"
                for t, v in one.points
                if math.isfinite(v)
            ]
            closed = [f"{area.x + area.w:.1f},{area.y + area.h:.1f}", f"{area.x:.1f},{area.y + area.h:.1f}"]
            body.append(f'<polygon points="{" ".join(pts + closed)}" fill="{colour}" fill-opacity="0.12"/>')
            body.append(
                f'<polyline points="{" ".join(pts)}" fill="none" stroke="{colour}" stroke-width="1.2"/>'
            )
        body.append(
            text(box.x + box.w / 2, box.y + box.h * 0.62, mapped(panel, one.last), 30, colour, "middle",
                 font_weight="bold")
        )  # fmt: skip
        return body
    longest = max(len(one.name) for one in series) * 5.9 + 16
    columns = min(len(series), 4)
    while columns > 1 and (box.w - 16) / columns < longest:
        columns -= 1
    rows = math.ceil(len(series) / columns)
    cell_w = (box.w - 16 - (columns - 1) * 6) / columns
    cell_h = (box.h - 36 - (rows - 1) * 6) / rows
    for i, one in enumerate(series):
        cx = box.x + 8 + (i % columns) * (cell_w + 6)
        cy = box.y + 30 + (i // columns) * (cell_h + 6)
        colour = threshold_colour(panel, one.last)
        fill, ink = (colour, "#ffffff") if background else ("#ffffff", colour)
        body.append(
            f'<rect x="{cx:.1f}" y="{cy:.1f}" width="{cell_w:.1f}" height="{cell_h:.1f}" rx="3" '
            f'fill="{fill}"/>'
        )
        body.append(
            text(cx + cell_w / 2, cy + cell_h / 2 - 6, fit(one.name, cell_w - 10, 10.5), 10.5, ink, "middle")
        )
        body.append(
            text(cx + cell_w / 2, cy + cell_h / 2 + 14, mapped(panel, one.last), 17, ink, "middle",
                 font_weight="bold")
        )  # fmt: skip
    return body


def table_rows(panel: dict[str, Any], results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Grafana's merge + organize + sortBy over the panel's instant queries: one row per label
    set, a `Value #<refId>` column per query, renamed and ordered as the panel says."""
    merged: dict[tuple[tuple[str, str], ...], dict[str, float | str]] = {}
    for target in panel.get("targets", []):
        answer = results.get(f"{panel['id']}/{target['refId']}", {})
        for result in answer.get("result", []):
            labels = {k: v for k, v in result.get("metric", {}).items() if k != "__name__"}
            row = merged.setdefault(tuple(sorted(labels.items())), dict(labels))
            row[f"Value #{target['refId']}"] = float(result["value"][1])
    organize: dict[str, Any] = {}
    sort: list[dict[str, Any]] = []
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "organize":
            organize = transformation.get("options", {})
        elif transformation["id"] == "sortBy":
            sort = transformation.get("options", {}).get("sort", [])
    index = organize.get("indexByName", {})
    rename = organize.get("renameByName", {})
    excluded = {k for k, v in organize.get("excludeByName", {}).items() if v}
    fields = sorted(
        {k for row in merged.values() for k in row} - excluded, key=lambda k: (index.get(k, 99), k)
    )
    units: dict[str, str] = {}
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        for prop in override.get("properties", []):
            if prop.get("id") == "unit":
                units[override["matcher"]["options"]] = prop["value"]
    rows = list(merged.values())
    for rule in reversed(sort):
        key = next((f for f in fields if rename.get(f, f) == rule["field"]), rule["field"])
        rows.sort(
            key=lambda r: (isinstance(r.get(key), float), r.get(key, "")), reverse=rule.get("desc", False)
        )
    headers = [rename.get(f, f) for f in fields]
    cells = []
    for row in rows:
        line = []
        for field_, header in zip(fields, headers, strict=True):
            value = row.get(field_, "")
            if isinstance(value, float):
                unit = units.get(header)
                line.append(f"{value:.0f}" if unit == "short" else formatted(value, unit))
            else:
                line.append(str(value))
        cells.append(line)
    return headers, cells


def draw_table(panel: dict[str, Any], box: Box, results: dict[str, Any]) -> list[str]:
    headers, rows = table_rows(panel, results)
    if not rows:
        return [text(box.x + box.w / 2, box.y + box.h / 2, "No data", 13, MUTED, "middle")]
    # Widths from the longest cell of each column, the free space going to the widest.
    lengths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    total = sum(lengths)
    usable = box.w - 24
    widths = [usable * n / total for n in lengths]
    body: list[str] = []
    row_h = 17
    y = box.y + 44
    fitting = int((box.h - 44 - 8) // row_h)
    shown = rows[: fitting - 1] if len(rows) > fitting else rows
    x = box.x + 12
    numeric = [all(re.match(r"^[-\d.]", r[i] or "x") for r in rows) for i in range(len(headers))]
    for width, header, is_number in zip(widths, headers, numeric, strict=True):
        anchor, hx = ("end", x + width - 8) if is_number else ("start", x)
        body.append(text(hx, y - 8, header, 10.5, MUTED, anchor, font_weight="bold"))
        x += width
    body.append(
        f'<line x1="{box.x + 8}" y1="{y - 3}" x2="{box.x + box.w - 8}" y2="{y - 3}" stroke="{LINE}"/>'
    )
    for n, row in enumerate(shown):
        ry = y + n * row_h
        if n % 2:
            body.append(
                f'<rect x="{box.x + 8}" y="{ry - 2}" width="{box.w - 16}" height="{row_h}" fill="#f3f5f7"/>'
            )
        x = box.x + 12
        for width, cell, is_number in zip(widths, row, numeric, strict=True):
            anchor, cx = ("end", x + width - 8) if is_number else ("start", x)
            body.append(text(cx, ry + 10, fit(cell, width - 10, 10.5), 10.5, INK, anchor))
            x += width
    if len(shown) < len(rows):
        body.append(
            text(box.x + 12, y + len(shown) * row_h + 10, f"+ {len(rows) - len(shown)} more rows", 10, MUTED)
        )
    return body


def render_dashboard(dashboard: dict[str, Any], run: tuple[float, float], step: float, window: float) -> str:
    board: dict[str, Any] = dashboard["board"]
    results: dict[str, Any] = dashboard["results"]
    margin, header, unit_h, gap = 12, 62, 36, 6
    column = (WIDTH - 2 * margin) / 24
    every = list(panels(board))
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in every)
    height = header + bottom * unit_h + margin
    body = [text(margin, 26, board["title"], 16, font_weight="bold")]
    start, end = run
    body.append(
        text(
            margin,
            46,
            f"{dashboard['file']}  ·  Prometheus over {end - start:.0f} s of a native run "
            "(scripts/snapshot): "
            f"app_id = All, step {step:g} s, $__rate_interval = {window:g} s; x: seconds since the first "
            "checkout  ·  "
            + datetime.datetime.fromtimestamp(end, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            11.5,
            MUTED,
        )
    )
    for panel in every:
        pos = panel["gridPos"]
        box = Box(
            margin + pos["x"] * column + gap / 2,
            header + pos["y"] * unit_h,
            pos["w"] * column - gap,
            pos["h"] * unit_h - gap,
        )
        if panel["type"] == "row":
            body.append(text(box.x + 2, box.y + 21, panel["title"], 13.5, INK, font_weight="bold"))
            body.append(
                f'<line x1="{box.x:.1f}" y1="{box.y + 28:.1f}" x2="{box.x + box.w:.1f}" '
                f'y2="{box.y + 28:.1f}" stroke="{LINE}"/>'
            )
            continue
        body.append(
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" rx="4" '
            f'fill="#ffffff" stroke="{LINE}"/>'
        )
        body.append(
            text(box.x + 10, box.y + 19, fit(panel["title"], box.w - 20, 12.5), 12.5, font_weight="bold")
        )
        series, errors = panel_series(panel, results)
        if errors:
            body.append(
                text(box.x + 10, box.y + 40, fit(f"query failed: {errors[0]}", box.w - 20, 10), 10, "#cf222e")
            )
        elif panel["type"] == "table":
            body.extend(draw_table(panel, box, results))
        elif panel["type"] in ("stat", "gauge"):
            body.extend(draw_stat(panel, box, series))
        else:
            body.extend(draw_timeseries(panel, box, series, run))
    return svg(WIDTH, height, body)


def render(data: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    trace_path = out / "trace.svg"
    trace_path.write_text(render_trace(data["trace"], data.get("traffic", "")))
    written.append(trace_path)
    run = (float(data["started"]), float(data["ended"]))
    for dashboard in data["dashboards"]:
        name = dashboard["board"].get("uid") or Path(dashboard["file"]).stem
        path = out / f"dashboard-{name}.svg"
        window = float(data["rate_interval"])
        path.write_text(render_dashboard(dashboard, run, float(data["step"]), window))
        written.append(path)
    return written


# --- what looks wrong -----------------------------------------------------------------------


def oddities(data: dict[str, Any]) -> list[str]:
    """Panels without data, queries that failed, traces that were not complete."""
    found = []
    counts = data.get("traces_looked_at", {})
    if set(counts) - {f"{CHECKOUT_SPANS} spans"}:
        found.append(f"traces looked at, by spans: {counts}")
    if len(data["trace"]["spans"]) != CHECKOUT_SPANS:
        found.append(f"the trace drawn has {len(data['trace']['spans'])} spans, not {CHECKOUT_SPANS}")
    for dashboard in data["dashboards"]:
        for panel in panels(dashboard["board"]):
            if panel["type"] == "row":
                continue
            series, errors = panel_series(panel, dashboard["results"])
            where = f"{dashboard['board']['title']} / {panel['title']}"
            if errors:
                found.append(f"{where}: query failed: {errors[0]}")
            elif not series or not any(s.finite for s in series):
                found.append(f"{where}: no data")
    for error in data.get("errors", []):
        found.append(f"checkout failed: {error}")
    return found


# --- command line ---------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="scripts/snapshot",
        description="Run the native stack under checkout traffic and draw a trace from Jaeger and "
        "the dashboards' panels from Prometheus as SVG.",
    )
    cli.add_argument("--out", type=Path, default=Path("docs/images"), help="where the SVGs go")
    cli.add_argument("--seconds", type=float, default=60.0, help="traffic before the pictures (default 60)")
    cli.add_argument("--step", type=float, default=5.0, help="query_range step in seconds (default 5)")
    cli.add_argument(
        "--rate-interval",
        type=float,
        metavar="SECONDS",
        help="$__rate_interval (default: Grafana's, max(step + scrape interval, 4 x scrape interval))",
    )
    cli.add_argument("--save-data", type=Path, metavar="FILE", help="also keep what was fetched, as JSON")
    cli.add_argument("--from-data", type=Path, metavar="FILE", help="draw from saved data, run nothing")
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    began = time.monotonic()
    if args.from_data:
        data = json.loads(args.from_data.read_text())
    else:
        folder = dashboards_dir()
        boards = sorted(folder.glob("*.json")) if folder else []
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _interrupt)
        try:
            data = collect(args.seconds, args.step, args.rate_interval, boards)
        except StackError as exc:
            print(f"snapshot: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("snapshot: interrupted", file=sys.stderr)
            return 130
        if args.save_data:
            args.save_data.write_text(json.dumps(data) + "\n")
    for path in render(data, args.out):
        print(f"snapshot: wrote {path}")
    for oddity in oddities(data):
        print(f"snapshot: note: {oddity}")
    print(f"snapshot: done in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's first command: `outrig demo` runs three services and prints their trace;
`outrig traces` prints it again from the local store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def outrig(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OUTRIG_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "outrig.runtime", *args], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip


def test_demo_prints_one_trace_through_three_sidecars_and_traces_shows_it(tmp_path: Path) -> None:
    demo = outrig(tmp_path, "demo", "--requests", "2")
    assert demo.returncode == 0, demo.stderr
    assert "checkout {'item': 'espresso', 'quantity': 2} -> 201" in demo.stdout
    assert "checkout {'item': 'croissant', 'quantity': 1} -> 409" in demo.stdout
    heading = "The last placed order's trace (invoke, state, publish, delivery), from the local trace store:"
    tree = demo.stdout.split(heading)[1].split("\nSpans are kept in")[0]
    assert " 16 spans " in tree, tree
    lines = tree.strip().splitlines()[1:]
    for service in ("[frontend]", "[orders]", "[inventory]"):
        assert service in tree
    assert "/v1.0/invoke/inventory/method/stock/espresso" in tree, "the placed order (espresso) is shown"

    def depth(fragment: str) -> int:
        """The tree depth of the one line holding `fragment` (each level indents 3 columns)."""
        [line] = [line for line in lines if fragment in line]
        return (len(line) - len(line.lstrip(" │├└─"))) // 3

    orders_app = depth("[orders]  client  POST  http://")
    assert depth("[orders]  server  GET /v1.0/invoke/{appId}/method/{method}") == orders_app + 1
    # The order is saved, then published, then delivered to inventory: each under the last.
    assert depth("[orders]  server  POST /v1.0/state/{storeName}") == orders_app + 1
    assert depth("[orders]  client  SET statestore") == orders_app + 2
    assert depth("[orders]  server  POST /v1.0/publish/{pubsubname}/{topic}") == orders_app + 1
    assert depth("[orders]  producer  send orders") == orders_app + 2
    assert depth("[inventory]  consumer  process orders") == orders_app + 3
    assert depth("[inventory]  client  POST /orders-placed") == orders_app + 4
    assert not list((tmp_path / "registry").glob("*/*.json")), "every demo sidecar unregistered at exit"

    header = tree.strip().splitlines()[0]
    again = outrig(tmp_path, "traces", "--trace", header.split()[1][:12])
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == tree.strip(), "`outrig traces` prints the same tree"
    both = outrig(tmp_path, "traces", "-n", "2")
    assert both.returncode == 0, both.stderr
    [refused] = [t for t in both.stdout.split("\n\n") if t.strip() and header not in t]
    assert header in both.stdout
    assert "/v1.0/invoke/inventory/method/stock/croissant" in refused
    assert " 10 spans " in refused and "statestore" not in refused, "a refused checkout saves nothing"
    only_inventory = outrig(tmp_path, "traces", "-n", "5", "--app-id", "inventory")
    assert only_inventory.stdout.count("\ntrace ") + only_inventory.stdout.startswith("trace ") == 2


def test_traces_without_a_store_says_so(tmp_path: Path) -> None:
    result = outrig(tmp_path, "traces")
    assert result.returncode == 1
    assert "no traces yet" in result.stderr

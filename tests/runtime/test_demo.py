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
    tree = demo.stdout.split("The last checkout's trace, from the local trace store:")[1]
    assert " 10 spans " in tree
    for service in ("[frontend]", "[orders]", "[inventory]"):
        assert service in tree
    assert "/v1.0/invoke/inventory/method/stock/croissant" in tree
    assert not list((tmp_path / "registry").glob("*/*.json")), "every demo sidecar unregistered at exit"

    traces = outrig(tmp_path, "traces", "-n", "1")
    assert traces.returncode == 0, traces.stderr
    assert traces.stdout.splitlines()[0] == tree.strip().splitlines()[0]
    only_inventory = outrig(tmp_path, "traces", "-n", "5", "--app-id", "inventory")
    assert only_inventory.stdout.count("\ntrace ") + only_inventory.stdout.startswith("trace ") == 2


def test_traces_without_a_store_says_so(tmp_path: Path) -> None:
    result = outrig(tmp_path, "traces")
    assert result.returncode == 1
    assert "no traces yet" in result.stderr

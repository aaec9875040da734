"""A wheel built from the repo holds every module and installs and runs in a fresh venv."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGE_DIRS = {
    "runtime": "outrig/runtime",
    "middleware": "outrig/middleware",
    "telemetry": "outrig/telemetry",
}


def test_wheel_holds_every_module_and_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("outrig-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"{target}/{path.relative_to(ROOT / folder).as_posix()}"
        for folder, target in PACKAGE_DIRS.items()
        for path in (ROOT / folder).rglob("*.py")
    }
    assert expected - names == set(), "modules missing from the wheel (list them in pyproject)"
    assert not any(n.startswith(("runtime/", "middleware/", "telemetry/")) for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The dependencies come from this environment's site-packages, added as a plain path
    # (its .pth files, among them the editable install of outrig, are not processed), so
    # the test needs no network and outrig itself can only come from the wheel.
    site = next((venv / "lib").glob("python3*/site-packages"))
    ours = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "aiohttp").exists())
    (site / "deps.pth").write_text(str(ours) + "\n")
    subprocess.run([venv / "bin" / "pip", "install", "--no-deps", "-q", str(wheel)], check=True)
    probe = subprocess.run(
        [
            venv / "bin" / "python",
            "-c",
            "import outrig.runtime, outrig.middleware, outrig.telemetry, outrig.runtime.demo.service;"
            "print(outrig.middleware.__file__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert str(venv) in probe.stdout
    help_text = subprocess.run(
        [venv / "bin" / "outrig", "run", "--help"], check=True, capture_output=True, text=True
    ).stdout
    assert "--app-id" in help_text and "--dapr-http-port" in help_text

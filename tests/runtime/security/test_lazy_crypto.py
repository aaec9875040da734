"""A sidecar without mTLS never loads `cryptography` (~10 MB resident)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import outrig.runtime.sidecar, outrig.runtime.cli, outrig.runtime.security
from outrig.runtime.options import SidecarOptions
from outrig.runtime.resources import Resources
from outrig.runtime.security.settings import workload_identity
outrig.runtime.cli.parser()  # `outrig run` builds the whole parser, `outrig ca` included
assert workload_identity(SidecarOptions(app_id="a"), Resources()) is None
assert "cryptography" not in sys.modules, "cryptography loaded without mTLS"
from outrig.runtime.security import Authority
assert Authority.__name__ == "Authority" and "cryptography" in sys.modules
"""


def test_cryptography_loads_only_when_certificates_are_used() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

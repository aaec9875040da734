#!/usr/bin/env bash
# Installs Prometheus (Debian's `prometheus` package) when the machine lacks it, and prints
# the binary's path as its last line. scripts/stack and tests/test_stack.py run that binary
# themselves, on free loopback ports with a generated config and a temporary storage dir, so
# the Debian service is neither started nor enabled here: policy-rc.d refuses the start the
# package's postinst would make, and the unit is stopped and disabled if it ran anyway.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1; then
    command -v prometheus
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo -n); fi
export DEBIAN_FRONTEND=noninteractive

# invoke-rc.d consults /usr/sbin/policy-rc.d: exit 101 = "action forbidden", so the
# package installs without starting its daemon (it would bind :9090 and :9100). Only add
# one when there is none, and remove only the one added here.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    added_policy=1
fi
cleanup() { if [ "$added_policy" -eq 1 ]; then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

# --no-install-recommends: the recommended prometheus-node-exporter would be a second
# daemon; only the server binary is needed.
install=("${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus)
"${install[@]}" >/dev/null 2>&1 || {
    "${sudo[@]}" apt-get update -qq
    "${install[@]}" >&2
}
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    "${sudo[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
command -v prometheus

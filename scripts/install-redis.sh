#!/usr/bin/env bash
# Installs redis-server (Debian's package) when the machine lacks it: the state and pub/sub
# tests start their own servers on free ports, so nothing is configured or started here.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo -n); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get install -y -qq redis-server >/dev/null 2>&1 || {
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq redis-server
}
command -v redis-server >/dev/null

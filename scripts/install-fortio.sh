#!/usr/bin/env bash
# Build (once) and cache the Fortio HTTP load generator (the tool Dapr's perf tests use)
# from Go modules. Needs only Go + access to the Go module proxy. Prints the binary path
# as its last line.
#   OUTRIG_TOOLS  cache dir (default ~/.cache/outrig/tools)
# Cold (empty Go caches): ~50 s on 2 cores; warm Go caches: ~2 s; cached binary: instant.
#
# Benchmark usage (fixed 1,000 req/s, 16 connections, 1 KB POST body, JSON results):
#   FORTIO="$(scripts/install-fortio.sh | tail -1)"
#   "$FORTIO" load -qps 1000 -c 16 -t 30s -payload-size 1024 -uniform -r 0.0001 \
#     -allow-initial-errors -log-errors=false -json out.json http://127.0.0.1:PORT/path
# -payload-size makes it a POST (application/octet-stream); -uniform staggers the 16
# connections (else they fire in bursts); -r 0.0001 gives 0.1 ms histogram buckets (the
# default 1 ms makes sub-ms percentiles meaningless); -allow-initial-errors stops a non-2xx
# warm-up request from aborting the run with exit 1.
set -euo pipefail

# fortio.org/fortio module tag; `fortio version` reports 1.68.2. v1.68.2 (2025-04) is the
# newest release that builds here: v1.69.0+ import grol.io/grol unconditionally (script mode),
# and the grol.io module host is not reachable through our module proxy (403 allowlist).
FORTIO_VERSION=v1.68.2
source "$(dirname "$0")/lib/gotool.sh"
gotool_begin fortio "$FORTIO_VERSION"

echo "install-fortio: building fortio $FORTIO_VERSION into $BIN (first time takes ~1 min)" >&2
# `go install pkg@version` builds with fortio's own go.mod/go.sum (outside any module);
# it fails under a caller GOFLAGS=-mod=vendor, so drop any caller GOFLAGS.
export GOFLAGS=""
GOBIN="$WORK" "$GO" install "fortio.org/fortio@$FORTIO_VERSION" >&2

gotool_publish fortio

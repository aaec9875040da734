#!/usr/bin/env bash
# Build (once) and cache the real Jaeger v2 all-in-one binary from Go modules.
# Needs only Go + access to the Go module proxy. Prints the binary path as its last line.
#   OUTRIG_TOOLS  cache dir (default ~/.cache/outrig/tools)
# Cold (empty Go caches): ~6 min on 2 cores; warm Go caches: ~20 s; cached binary: instant.
set -euo pipefail

JAEGER_MODULE_VERSION=v1.76.0   # Go module tag; the cmd/jaeger binary is Jaeger v2.13.0
JAEGER_V2_VERSION=v2.13.0       # what `jaeger version` reports (set via -ldflags below)
source "$(dirname "$0")/lib/gotool.sh"
gotool_begin jaeger "$JAEGER_MODULE_VERSION"

echo "install-jaeger: building jaeger $JAEGER_MODULE_VERSION into $BIN (first time takes minutes)" >&2
export GOFLAGS="-mod=mod"   # ignore any caller GOFLAGS such as -mod=vendor
"$GO" mod init outrig-jaeger-tools >&2
# Jaeger's own go.mod has this replace; replaces of dependencies are ignored, so repeat it.
"$GO" mod edit -replace github.com/Shopify/sarama=github.com/Shopify/sarama@v1.33.0
"$GO" get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_MODULE_VERSION" >&2

V=github.com/jaegertracing/jaeger/internal/version
"$GO" build -o "$WORK/jaeger" \
  -ldflags "-X $V.latestVersion=$JAEGER_V2_VERSION -X $V.commitSHA=module-$JAEGER_MODULE_VERSION" \
  github.com/jaegertracing/jaeger/cmd/jaeger >&2

gotool_publish jaeger

# Shared by scripts/install-*.sh: build a Go tool once into the cache, reuse it after.
#   OUTRIG_TOOLS  cache dir (default ~/.cache/outrig/tools)
# Usage, in a script with `set -euo pipefail`:
#   source "$(dirname "$0")/lib/gotool.sh"
#   gotool_begin NAME VERSION      # prints the cached binary and exits if it runs; else
#                                  # sets BIN, GO, WORK (a temp dir, cwd) for the build
#   ... build "$WORK/NAME" with "$GO" ...
#   gotool_publish NAME            # sanity-checks "$WORK/NAME", moves it to $BIN, prints it

gotool_begin() {
  local name=$1 version=$2
  TOOLS="${OUTRIG_TOOLS:-$HOME/.cache/outrig/tools}"
  BIN="$TOOLS/$name-$version"
  if [[ -x "$BIN" ]] && "$BIN" version >/dev/null 2>&1; then
    echo "$BIN"
    exit 0
  fi
  GO="$(command -v go || true)"
  [[ -n "$GO" ]] || GO=/usr/local/go/bin/go
  [[ -x "$GO" ]] || { echo "install-$name: Go toolchain not found" >&2; exit 1; }
  # The build dir sits under the cache dir so the final mv is atomic.
  mkdir -p "$TOOLS"
  WORK="$(mktemp -d "$TOOLS/.$name-build.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  cd "$WORK"
}

gotool_publish() {
  local name=$1
  "$WORK/$name" version >/dev/null   # sanity check before publishing
  mv -f "$WORK/$name" "$BIN"
  echo "$BIN"
}

#!/usr/bin/env bash
# Build lineproto-oracle (scripts/lineproto-oracle/): InfluxDB 2.7.12's own line-protocol parser
# (models.ParsePointsWithPrecision, what /api/v2/write calls) behind stdin/stdout, for the
# differential tests of telestack.core.lineproto (tests/core/test_lineproto_oracle.py).
#
#   services/telestack/native/scripts/install-lineproto-oracle.sh   # progress on stderr,
#                                                 # the binary path as the last stdout line
#
# Cached as $TELESTACK_CACHE/lineproto-oracle/<hash of main.go, go.mod, go.sum>/lineproto-oracle, so an
# edited source rebuilds and an unchanged one returns at once. Go modules come from the module cache
# the InfluxDB build filled ($TELESTACK_CACHE/influxdb/go-mod): offline first (GOPROXY=off), then
# the Go module proxy for whatever is missing (a cache without the InfluxDB build).
set -euo pipefail

log() { printf '[install-lineproto-oracle] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

SRC="$(cd "$(dirname "$0")/lineproto-oracle" && pwd)"
CACHE_ROOT="${TELESTACK_CACHE:-$HOME/.cache/telestack}"
HASH="$(cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -c1-16)"
BIN="$CACHE_ROOT/lineproto-oracle/$HASH/lineproto-oracle"

if [[ -x "$BIN" ]]; then
  log "cached: $BIN"
  echo "$BIN"
  exit 0
fi

for d in /usr/local/go/bin "$HOME/go/bin"; do
  [[ -d "$d" && ":$PATH:" != *":$d:"* ]] && PATH="$PATH:$d"
done
export PATH
command -v go >/dev/null 2>&1 || die "Go (>= 1.23) is required but 'go' is not on PATH"

export GOMODCACHE="$CACHE_ROOT/influxdb/go-mod"
export GOCACHE="$CACHE_ROOT/influxdb/go-build"
export GOFLAGS="-buildvcs=false -mod=readonly"
export CGO_ENABLED=0
mkdir -p "$GOMODCACHE" "$GOCACHE" "$(dirname "$BIN")"

START=$(date +%s)
log "building from $SRC (InfluxDB's models package, offline from the module cache if it can)..."
cd "$SRC"
if ! GOPROXY=off go build -o "$BIN.tmp" . 2>"$BIN.log"; then
  log "not everything is in the module cache; fetching from the Go module proxy"
  go build -o "$BIN.tmp" . 2>"$BIN.log" || { cat "$BIN.log" >&2; die "go build failed"; }
fi
mv -f "$BIN.tmp" "$BIN"
printf 'ns 6\nm f=1i' | "$BIN" | grep -q '"integer"' || die "the built oracle does not answer as expected"
log "built $BIN in $(( $(date +%s) - START ))s"
echo "$BIN"

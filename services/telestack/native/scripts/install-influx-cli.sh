#!/usr/bin/env bash
# Build the `influx` CLI from github.com/influxdata/influx-cli/v2, at the version InfluxDB's own go.mod pins (the Go
# proxy serves no v2.7.x tag of it), cached outside the repo. The local influxdb image needs it (`influx setup`,
# `influx ping` in the healthcheck), as the official image has it.
#
#   install-influx-cli.sh      # progress on stderr; last stdout line: the influx binary
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac

CACHE="${TELESTACK_CACHE:-$HOME/.cache/telestack}"
INFLUXDB_VERSION="${INFLUXDB_VERSION:-v2.7.12}"
GOMOD="$CACHE/influxdb/$INFLUXDB_VERSION/src/go.mod"
log() { printf '[install-influx-cli] %s\n' "$*" >&2; }
[[ -f "$GOMOD" ]] || { log "InfluxDB's sources are not in the cache: run install-influxdb.sh first"; exit 1; }
VERSION="$(awk '$1 == "github.com/influxdata/influx-cli/v2" {print $2}' "$GOMOD")"
[[ -n "$VERSION" ]] || { log "influx-cli is not in $GOMOD"; exit 1; }
BIN="$CACHE/influx-cli/$VERSION/influx"
if [[ -x "$BIN" ]] && "$BIN" version >/dev/null 2>&1; then
  log "cached: $("$BIN" version)"; echo "$BIN"; exit 0
fi
for d in /usr/local/go/bin "$HOME/go/bin"; do [[ -d "$d" && ":$PATH:" != *":$d:"* ]] && PATH="$PATH:$d"; done
export GOMODCACHE="$CACHE/go-mod" GOCACHE="$CACHE/go-build" GOFLAGS="-modcacherw" CGO_ENABLED=0
mkdir -p "$(dirname "$BIN")"
started=$SECONDS
log "building influx-cli $VERSION (the version influxdb $INFLUXDB_VERSION pins)..."
dir="$(cd "$CACHE" && go mod download -json "github.com/influxdata/influx-cli/v2@$VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[[ -d "$dir" ]] || { log "go mod download of influx-cli $VERSION failed"; exit 1; }
(cd "$dir" && go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$BIN.tmp" ./cmd/influx) >&2
mv "$BIN.tmp" "$BIN"
log "built $("$BIN" version) in $((SECONDS - started)) s"
echo "$BIN"

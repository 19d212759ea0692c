#!/usr/bin/env bash
# Build Telegraf from its Go module with only the plugins telestack uses (Telegraf's `custom` build tags), cached
# outside the repo. Used by the Telegraf tests, the benchmarks that compare with Telegraf, and the local
# telegraf image (`make images-local`).
#
#   install-telegraf.sh             # progress on stderr; last stdout line: the telegraf binary
#
# The version is the one .env.example pins (TELEGRAF_IMAGE=telegraf:X.Y.Z), or TELEGRAF_VERSION.
# Idempotent: a cached binary for this version and plugin set is reused (well under a second).
# TELESTACK_NO_BUILD=1: only report the cached binary, fail if it is missing (what tests do: no build in a test).
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TELESTACK_CACHE:-$HOME/.cache/telestack}"
# Inputs, processors, aggregators, outputs, parsers and serializers of telegraf/*.conf, telegraf/edge/*.conf
# and the benchmarks' side-by-side configs.
PLUGINS="inputs.prometheus,inputs.http,inputs.modbus,inputs.mqtt_consumer,inputs.kafka_consumer,processors.regex,\
aggregators.basicstats,outputs.influxdb_v2,outputs.kafka,outputs.health,outputs.http,outputs.file,\
parsers.json_v2,parsers.prometheus,parsers.influx,serializers.influx"
if [[ -z "${TELEGRAF_VERSION:-}" ]]; then
  env_example="$HERE/../../../../.env.example"
  TELEGRAF_VERSION="$(sed -n 's/^TELEGRAF_IMAGE=telegraf:\([0-9.]*\)$/\1/p' "$env_example" 2>/dev/null || true)"
  TELEGRAF_VERSION="${TELEGRAF_VERSION:-1.37.2}"
fi
plugins_sum="$(printf '%s' "$PLUGINS" | sha256sum | cut -c1-12)"
DEST="$CACHE/telegraf/v$TELEGRAF_VERSION-$plugins_sum"
BIN="$DEST/telegraf"
log() { printf '[install-telegraf] %s\n' "$*" >&2; }

if [[ -x "$BIN" ]] && "$BIN" --version >/dev/null 2>&1; then
  log "cached: $("$BIN" --version)"
  echo "$BIN"; exit 0
fi
if [[ -n "${TELESTACK_NO_BUILD:-}" ]]; then
  log "Telegraf v$TELEGRAF_VERSION is not built yet: run 'make setup' (or telestack native install)"; exit 1
fi
for d in /usr/local/go/bin "$HOME/go/bin"; do [[ -d "$d" && ":$PATH:" != *":$d:"* ]] && PATH="$PATH:$d"; done
command -v go >/dev/null || { log "Go is required to build Telegraf"; exit 1; }
mkdir -p "$DEST"
exec 9>"$DEST/.lock"; flock 9
if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi
export GOMODCACHE="$CACHE/go-mod" GOCACHE="$CACHE/go-build" GOFLAGS="-mod=readonly -modcacherw" CGO_ENABLED=0 \
  GOTOOLCHAIN=local
started=$SECONDS
log "downloading github.com/influxdata/telegraf@v$TELEGRAF_VERSION (Go module proxy)..."
dir="$(cd "$CACHE" && go mod download -json "github.com/influxdata/telegraf@v$TELEGRAF_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[[ -d "$dir" ]] || { log "go mod download of telegraf v$TELEGRAF_VERSION failed"; exit 1; }
log "building telegraf v$TELEGRAF_VERSION with plugins $PLUGINS (~2-5 min the first time)..."
(cd "$dir" && go build -trimpath -ldflags "-s -w -X github.com/influxdata/telegraf/internal.Version=$TELEGRAF_VERSION" \
  -tags "custom,$PLUGINS" -o "$BIN.tmp" ./cmd/telegraf) >&2
mv "$BIN.tmp" "$BIN"
log "built $("$BIN" --version) in $((SECONDS - started)) s"
echo "$BIN"

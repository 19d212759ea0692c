#!/usr/bin/env bash
# Local stand-ins for the official images, for engines that cannot reach an image registry:
#
#   build-images.sh            # build what is missing or out of date; progress on stderr, times printed
#
#   telestack-local/debian:bookworm   debootstrap --variant=minbase (tarball cached), the base of the others
#   telestack-local/python:3.11       Debian's Python 3.11 (base of the telestack image)
#   telestack-local/kafka:<v>         the native broker's Maven Central jars on Debian's OpenJDK 17
#   telestack-local/influxdb:<v>      the native influxd (built from InfluxDB's Go module) + the influx CLI
#   telestack-local/mosquitto:<v>     Debian's Mosquitto, the native broker's version
#   telestack-local/telegraf:<v>      the Telegraf build with telestack's plugins
#
# The versions are the native servers' versions, so native, testcontainers and compose run the same servers.
# Each image carries a label with the hash of its inputs: an unchanged image is not rebuilt (a second run takes
# seconds). Needs a running engine (docker-engine.sh up) and the native installs (telestack native install).
# Images never take an official name: .env selects them through the *_IMAGE variables (`make env-local`).
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../../.." && pwd)"
IMAGES="$ROOT/images"
CACHE="${TELESTACK_CACHE:-$HOME/.cache/telestack}"
WORK="$CACHE/images"
export DOCKER_BUILDKIT=0   # the engine's own builder: no buildx plugin needed
log() { printf '[build-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[[ -d "$IMAGES" ]] || die "no images/ folder at $IMAGES (run from a telestack checkout)"
docker version >/dev/null 2>&1 || die "no Docker engine answers (make docker-up, or set DOCKER_HOST)"
for d in /usr/local/go/bin "$HOME/go/bin"; do [[ -d "$d" && ":$PATH:" != *":$d:"* ]] && PATH="$PATH:$d"; done
mkdir -p "$WORK"
exec 9>"$WORK/.lock"; flock 9
TOTAL=$SECONDS

label_of() { docker image inspect -f '{{index .Config.Labels "telestack.inputs"}}' "$1" 2>/dev/null || true; }

# build TAG DIR [FILE...]: docker build images/DIR plus the given artifacts, unless TAG has the same inputs.
build() {
  local tag="$1" dir="$2"; shift 2
  local ctx="$WORK/ctx-$dir" sum started=$SECONDS
  rm -rf "$ctx"; mkdir -p "$ctx"
  cp -a "$IMAGES/$dir/." "$ctx/"
  for artifact in "$@"; do cp -a "$artifact" "$ctx/"; done
  sum="$( (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum; docker image inspect -f '{{.Id}}' \
    telestack-local/debian:bookworm) | sha256sum | cut -c1-16)"
  if [[ "$(label_of "$tag")" == "$sum" ]]; then
    log "$tag is up to date"
  else
    log "building $tag..."
    docker build --label "telestack.inputs=$sum" -t "$tag" "$ctx" >"$WORK/build-$dir.log" 2>&1 \
      || { tail -30 "$WORK/build-$dir.log" >&2; die "docker build of $tag failed (its log: $WORK/build-$dir.log)"; }
    log "built $tag in $((SECONDS - started)) s"
  fi
  rm -rf "$ctx"
}

# ---- the Debian base
if ! docker image inspect telestack-local/debian:bookworm >/dev/null 2>&1; then
  started=$SECONDS
  if [[ ! -s "$WORK/debian-bookworm.tar" ]]; then
    command -v debootstrap >/dev/null || { log "installing debootstrap"; apt-get install -y -qq debootstrap >&2; }
    log "debootstrap --variant=minbase bookworm (about a minute; cached as $WORK/debian-bookworm.tar)..."
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
      || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    tar -C "$WORK/rootfs" -cf "$WORK/debian-bookworm.tar.tmp" . && mv "$WORK/debian-bookworm.tar.tmp" "$WORK/debian-bookworm.tar"
    rm -rf "$WORK/rootfs"
  fi
  docker import "$WORK/debian-bookworm.tar" telestack-local/debian:bookworm >/dev/null
  log "imported telestack-local/debian:bookworm in $((SECONDS - started)) s"
fi

# ---- inputs shared with the native servers
KAFKA_LIBS="$(bash "$HERE/install-kafka.sh")"
KAFKA_VERSION="$(basename "$(dirname "$KAFKA_LIBS")")"
INFLUXD="$(bash "$HERE/install-influxdb.sh")"
INFLUX_CLI="$(bash "$HERE/install-influx-cli.sh")"
INFLUXDB_VERSION="$("$INFLUXD" version | sed -n 's/^InfluxDB v\{0,1\}\([0-9.]*\).*/\1/p')"
TELEGRAF="$(bash "$HERE/install-telegraf.sh")"
TELEGRAF_VERSION="$("$TELEGRAF" --version | sed -n 's/^Telegraf \([0-9.]*\).*/\1/p')"
MOSQUITTO_VERSION="$(apt-cache policy mosquitto 2>/dev/null | sed -n 's/^  Candidate: \([0-9.]*\).*/\1/p')"
[[ -n "$MOSQUITTO_VERSION" ]] || die "could not tell Debian's Mosquitto version (apt-get update?)"

build telestack-local/python:3.11 python
build "telestack-local/kafka:$KAFKA_VERSION" kafka "$KAFKA_LIBS" "$HERE/kafka/log4j2.properties"
build "telestack-local/influxdb:$INFLUXDB_VERSION" influxdb "$INFLUXD" "$INFLUX_CLI"
build "telestack-local/mosquitto:$MOSQUITTO_VERSION" mosquitto
build "telestack-local/telegraf:${TELEGRAF_VERSION:-unknown}" telegraf "$TELEGRAF"
log "images ready in $((SECONDS - TOTAL)) s"

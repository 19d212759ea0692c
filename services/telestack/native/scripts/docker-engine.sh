#!/usr/bin/env bash
# A Docker engine with the compose plugin, wherever one can be had:
#
#   docker-engine.sh up       # use $DOCKER_HOST or the default socket when an engine answers; otherwise (root on
#                             # Debian) install docker.io, start dockerd with its data under $TELESTACK_CACHE/docker
#                             # on its own socket, and build the compose plugin (cached). Last stdout line:
#                             # the DOCKER_HOST to use.
#   docker-engine.sh down     # stop the dockerd this script started (and only that one)
#   docker-engine.sh status   # which engine answers, and whether compose is there
#
# Images and volumes survive `down` (the data root is in the cache), so a second `up` is seconds.
# Environment: TELESTACK_CACHE (default ~/.cache/telestack), COMPOSE_VERSION (default v2.40.3).
set -euo pipefail

ACTION="${1:-up}"
case "$ACTION" in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  up|down|status) ;;
  *) echo "unknown action: $ACTION (up, down, status; try --help)" >&2; exit 2 ;;
esac

CACHE="${TELESTACK_CACHE:-$HOME/.cache/telestack}"
COMPOSE_VERSION="${COMPOSE_VERSION:-v2.40.3}"
RUN_DIR=/run/telestack-docker
OWN_HOST="unix://$RUN_DIR/docker.sock"
PIDFILE="$RUN_DIR/dockerd.pid"
PLUGIN_DIR="$HOME/.docker/cli-plugins"

log() { printf '[docker-engine] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
answers() { timeout 10 docker -H "$1" version --format '{{.Server.Version}}' 2>/dev/null; }
for d in /usr/local/go/bin "$HOME/go/bin"; do [[ -d "$d" && ":$PATH:" != *":$d:"* ]] && PATH="$PATH:$d"; done
export PATH

compose_plugin() {
  if docker compose version >/dev/null 2>&1; then return; fi
  local bin="$CACHE/compose/$COMPOSE_VERSION/docker-compose"
  if [[ ! -x "$bin" ]]; then
    command -v go >/dev/null || die "the compose plugin is missing and Go is not installed to build it"
    log "building the compose plugin $COMPOSE_VERSION from its Go module (~3-6 min the first time)..."
    local started=$SECONDS dir
    export GOMODCACHE="$CACHE/go-mod" GOCACHE="$CACHE/go-build" GOFLAGS=-modcacherw
    dir="$(cd "$CACHE" && go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -d "$dir" ]] || die "go mod download of docker/compose $COMPOSE_VERSION failed"
    mkdir -p "$(dirname "$bin")"
    # `go install` refuses the module (exclude directives): build inside the module dir.
    (cd "$dir" && go build -trimpath -o "$bin.tmp" \
      -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" ./cmd) >&2
    mv "$bin.tmp" "$bin"
    log "built the compose plugin in $((SECONDS - started)) s"
  fi
  mkdir -p "$PLUGIN_DIR"
  ln -sf "$bin" "$PLUGIN_DIR/docker-compose"
  docker compose version >&2 || die "the compose plugin at $bin does not run"
}

case "$ACTION" in
  status)
    for host in ${DOCKER_HOST:-} unix:///var/run/docker.sock "$OWN_HOST"; do
      if v="$(answers "$host")"; then log "engine $v answers on $host"; fi
    done
    docker compose version 2>/dev/null || log "no compose plugin (docker-engine.sh up builds it)"
    exit 0 ;;
  down)
    if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      pid="$(cat "$PIDFILE")"
      log "stopping the dockerd this script started (pid $pid); images stay in $CACHE/docker"
      kill "$pid"
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && die "dockerd $pid did not stop"
    else
      log "no dockerd started by this script is running"
    fi
    exit 0 ;;
esac

# ---- up
command -v docker >/dev/null || NEED_DOCKER=1
for host in ${DOCKER_HOST:-} unix:///var/run/docker.sock "$OWN_HOST"; do
  if [[ -z "${NEED_DOCKER:-}" ]] && v="$(answers "$host")"; then
    log "engine $v answers on $host"
    compose_plugin
    echo "$host"
    exit 0
  fi
done

[[ $(id -u) -eq 0 ]] || die "no Docker engine answers, and starting one needs root (or set DOCKER_HOST)"
if ! command -v dockerd >/dev/null; then
  command -v apt-get >/dev/null || die "no Docker engine answers and no apt-get to install docker.io"
  log "installing Debian's docker.io..."
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io iptables; } >&2 \
    || die "apt-get install docker.io failed"
fi
mkdir -p "$RUN_DIR" "$CACHE/docker/data"
log "starting dockerd (data in $CACHE/docker/data, socket $RUN_DIR/docker.sock, log $CACHE/docker/dockerd.log)"
nohup dockerd --data-root "$CACHE/docker/data" --exec-root "$RUN_DIR/exec" --pidfile "$PIDFILE" \
  -H "$OWN_HOST" >"$CACHE/docker/dockerd.log" 2>&1 &
for _ in $(seq 1 300); do
  if v="$(answers "$OWN_HOST")"; then
    log "engine $v started on $OWN_HOST (stop it with: make docker-down)"
    compose_plugin
    echo "$OWN_HOST"
    exit 0
  fi
  kill -0 $! 2>/dev/null || { tail -20 "$CACHE/docker/dockerd.log" >&2; die "dockerd exited"; }
  sleep 0.2
done
die "dockerd did not answer within 60 s (log: $CACHE/docker/dockerd.log)"

#!/usr/bin/env bash
# Install Debian's headless-capable Chromium, idempotently: the browser the actuator's /ui tests drive over the
# DevTools protocol (tests/actuator/chromium.py). A test tool, installed by `make setup` like Telegraf, never by a test.
#
# Last line of stdout: the path of the chromium binary.
set -euo pipefail

log() { echo "[install-chromium] $*" >&2; }

find_binary() {
    for candidate in /usr/bin/chromium /usr/bin/chromium-browser; do
        if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
    done
    return 1
}

if binary=$(find_binary); then
    log "cached: $("$binary" --version 2>/dev/null || echo chromium)"
    echo "$binary"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { log "need root (or sudo) to apt-get install chromium"; exit 1; }
    SUDO="sudo"
fi
command -v apt-get >/dev/null 2>&1 || { log "apt-get not found: install Chromium with your package manager"; exit 1; }
started=$(date +%s)
log "installing chromium via apt-get (about a minute, once)..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends chromium >&2
binary=$(find_binary) || { log "apt-get installed chromium but no binary was found"; exit 1; }
log "installed $("$binary" --version 2>/dev/null || echo chromium) in $(( $(date +%s) - started )) s"
echo "$binary"

#!/usr/bin/env bash
# Install Mosquitto 2 (broker + clients) from Debian, idempotently.
# We start mosquitto ourselves with our own config; the Debian package's
# systemd unit / init script is irrelevant (there is no systemd in our
# containers and invoke-rc.d is told not to start anything).
#
# Last line of stdout: the path of the mosquitto binary (/usr/sbin/mosquitto on Debian;
# /usr/sbin may not be on a non-root PATH). Version: `mosquitto -h | head -1` prints
# "mosquitto version 2.0.11" (and mosquitto -h exits 3, so don't run it under set -e/pipefail).
#
# Running the broker as root (our case): mosquitto 2 started as root drops privileges to
# user `mosquitto` right after binding its listeners, BEFORE it reads password_file and
# persistence_location. Files in a root-owned 0700 dir (mktemp -d) then fail with
#   Error: Unable to open pwfile "...".   (and the broker exits)
# Two fixes that work (tested, 2.0.11):
#   a) put `user root` in the config (mosquitto then logs one
#      "Warning: Mosquitto should not be run as root/administrator." and keeps running as root), or
#   b) chown -R mosquitto: <dir with the conf, password file and data dir>.
# When not root, mosquitto just runs as the calling user and no `user` line is needed.
# Make the password file 0600, owned by the user mosquitto runs as: 2.0.11 does not check,
# but 2.0.16+ warns about world-readable password files (and future versions refuse them);
# mosquitto_passwd -c creates it 0644 under umask 022.
#
# Tested config (ports/paths are per run):
#   listener 18830 127.0.0.1
#   allow_anonymous false
#   password_file /tmp/x/passwd          # mosquitto_passwd -b -c /tmp/x/passwd USER PASS
#   persistence true
#   persistence_location /tmp/x/data/    # must already exist: 2.0.11 does not create it and only
#                                        # fails when saving mosquitto.db (on exit / autosave)
#   log_dest stderr
#   log_type error
#   log_type warning
#   user root                            # only when started as root, see above
set -euo pipefail

log() { echo "[install-mosquitto] $*" >&2; }

have_all() {
    command -v mosquitto >/dev/null 2>&1 \
        && command -v mosquitto_pub >/dev/null 2>&1 \
        && command -v mosquitto_sub >/dev/null 2>&1 \
        && command -v mosquitto_passwd >/dev/null 2>&1
}

# Debian installs the broker to /usr/sbin, which may not be on PATH for a non-login shell.
export PATH="$PATH:/usr/sbin:/sbin"

if have_all; then
    log "mosquitto already installed"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { log "need root (or sudo) to apt-get install mosquitto"; exit 1; }
        SUDO="sudo"
    fi
    log "installing mosquitto + mosquitto-clients via apt-get"
    # Keep the package's maintainer scripts from starting a system-wide broker.
    policy_created=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        policy_created=1
    fi
    cleanup() { if [ "$policy_created" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi; }
    trap cleanup EXIT
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >&2
    $SUDO apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients >&2
    cleanup; trap - EXIT
    have_all || { log "install finished but mosquitto binaries not found"; exit 1; }
fi

# `mosquitto -h` prints "mosquitto version 2.0.11" as its first line (and exits 3).
version="$( (mosquitto -h 2>&1 || true) | head -1 | awk '{print $3}')"
log "mosquitto version: ${version}"
command -v mosquitto

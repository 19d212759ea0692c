#!/bin/bash
# First start with DOCKER_INFLUXDB_INIT_MODE=setup: run influxd on loopback, `influx setup` with the
# DOCKER_INFLUXDB_INIT_* values, stop it; then (every start) run influxd on :8086 — as the official image does.
set -euo pipefail
if [[ "${DOCKER_INFLUXDB_INIT_MODE:-}" == setup && ! -f "$INFLUXD_BOLT_PATH" ]]; then
  : "${DOCKER_INFLUXDB_INIT_USERNAME:?}" "${DOCKER_INFLUXDB_INIT_PASSWORD:?}" "${DOCKER_INFLUXDB_INIT_ORG:?}"
  : "${DOCKER_INFLUXDB_INIT_BUCKET:?}"
  setup_url="http://127.0.0.1:${INFLUXDB_SETUP_PORT:-9999}"  # loopback only: nothing outside sees the set-up phase
  influxd --http-bind-address "${setup_url#http://}" --reporting-disabled --log-level warn &
  pid=$!
  # Wait while influxd runs (it exits on a real error), up to 10 min: on a loaded machine it took over a minute,
  # and the old 300 x 0.2 s fell through to `influx setup` on a server not up yet, which failed and ended the container.
  ready=0
  for _ in $(seq 1 3000); do
    if curl -fs "$setup_url/health" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 "$pid" || { echo "influxd exited during setup" >&2; exit 1; }
    sleep 0.2
  done
  [[ $ready == 1 ]] || { echo "influxd did not answer /health within 10 min of setup" >&2; exit 1; }
  # Every value as --flag=value: `--password -x...` reads as a flag, and a password or token may start with a hyphen
  # (ci, stop 28: `secrets.token_urlsafe` gave one, and setup failed with 'unknown command "telestack"').
  influx setup --force --host="$setup_url" \
    --username="$DOCKER_INFLUXDB_INIT_USERNAME" --password="$DOCKER_INFLUXDB_INIT_PASSWORD" \
    --org="$DOCKER_INFLUXDB_INIT_ORG" --bucket="$DOCKER_INFLUXDB_INIT_BUCKET" \
    ${DOCKER_INFLUXDB_INIT_RETENTION:+"--retention=$DOCKER_INFLUXDB_INIT_RETENTION"} \
    ${DOCKER_INFLUXDB_INIT_ADMIN_TOKEN:+"--token=$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"} >/dev/null
  # The CLI config `influx setup` saved points at the setup port; the server's own is 8086 (influx ping, query).
  influx config set --config-name=default --host-url=http://localhost:8086 >/dev/null
  echo "telestack-local/influxdb: set up org $DOCKER_INFLUXDB_INIT_ORG, bucket $DOCKER_INFLUXDB_INIT_BUCKET"
  kill "$pid"; wait "$pid" || true
fi
exec influxd --http-bind-address :8086 --reporting-disabled "$@"

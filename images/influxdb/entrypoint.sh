#!/bin/bash
# First start with DOCKER_INFLUXDB_INIT_MODE=setup: run influxd on loopback, `influx setup` with the
# DOCKER_INFLUXDB_INIT_* values, stop it; then (every start) run influxd on :8086 — as the official image does.
set -euo pipefail
if [[ "${DOCKER_INFLUXDB_INIT_MODE:-}" == setup && ! -f "$INFLUXD_BOLT_PATH" ]]; then
  : "${DOCKER_INFLUXDB_INIT_USERNAME:?}" "${DOCKER_INFLUXDB_INIT_PASSWORD:?}" "${DOCKER_INFLUXDB_INIT_ORG:?}"
  : "${DOCKER_INFLUXDB_INIT_BUCKET:?}"
  influxd --http-bind-address 127.0.0.1:9999 --reporting-disabled --log-level warn &
  pid=$!
  for _ in $(seq 1 300); do
    curl -fs http://127.0.0.1:9999/health >/dev/null 2>&1 && break
    kill -0 "$pid" || { echo "influxd exited during setup" >&2; exit 1; }
    sleep 0.2
  done
  influx setup --force --host http://127.0.0.1:9999 \
    --username "$DOCKER_INFLUXDB_INIT_USERNAME" --password "$DOCKER_INFLUXDB_INIT_PASSWORD" \
    --org "$DOCKER_INFLUXDB_INIT_ORG" --bucket "$DOCKER_INFLUXDB_INIT_BUCKET" \
    ${DOCKER_INFLUXDB_INIT_RETENTION:+--retention "$DOCKER_INFLUXDB_INIT_RETENTION"} \
    ${DOCKER_INFLUXDB_INIT_ADMIN_TOKEN:+--token "$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"} >/dev/null
  # The CLI config `influx setup` saved points at the setup port; the server's own is 8086 (influx ping, query).
  influx config set --config-name default --host-url http://localhost:8086 >/dev/null
  echo "telestack-local/influxdb: set up org $DOCKER_INFLUXDB_INIT_ORG, bucket $DOCKER_INFLUXDB_INIT_BUCKET"
  kill "$pid"; wait "$pid" || true
fi
exec influxd --http-bind-address :8086 --reporting-disabled "$@"

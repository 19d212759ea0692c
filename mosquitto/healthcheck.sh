#!/bin/sh
# Container healthcheck: log in as `healthcheck` (password made by entrypoint.sh) and read $SYS/broker/uptime.
exec mosquitto_sub -h 127.0.0.1 -p "${MQTT_PORT:-1883}" -u healthcheck \
    -P "$(cat "${MOSQUITTO_DATA_DIR:-/mosquitto/data}/healthcheck.password")" \
    -t '$SYS/broker/uptime' -C 1 -W 5 >/dev/null

#!/bin/sh
# Starts Mosquitto for telestack: writes the password file from the environment (and devices.passwd), copies the
# ACL next to it, renders mosquitto.conf (adding tls.conf when certificates are present), then runs mosquitto.
# Nothing secret is stored in the repository. In the container the defaults below apply; natively (the ACL test)
# MOSQUITTO_CONFIG_DIR, MOSQUITTO_DATA_DIR, MQTT_PORT, MQTT_SERVICE_PORT, MQTT_TLS_PORT and MOSQUITTO_USER point
# it elsewhere.
# Simulated devices (profile demo): one user per id in MQTT_SIMULATED_DEVICES, whose password is derived from
# MQTT_SIMULATOR_PASSWORD (sha256 of "<id>:<secret>", as telestack.core.mqtt.device_password computes it).
set -eu
CONFIG_DIR="${MOSQUITTO_CONFIG_DIR:-/mosquitto/config}"
DATA_DIR="${MOSQUITTO_DATA_DIR:-/mosquitto/data}"
: "${MQTT_BRIDGE_PASSWORD:?set MQTT_BRIDGE_PASSWORD in .env}"
: "${MQTT_ACTUATOR_PASSWORD:?set MQTT_ACTUATOR_PASSWORD in .env}"
: "${MQTT_ALERTING_PASSWORD:?set MQTT_ALERTING_PASSWORD in .env}"

umask 077
mkdir -p "$DATA_DIR"
passwd="$DATA_DIR/passwd"
: > "$passwd.tmp"
add_user() {  # user password
    mosquitto_passwd -b "$passwd.tmp" "$1" "$2"
}
add_user mqtt-bridge "$MQTT_BRIDGE_PASSWORD"
add_user actuator "$MQTT_ACTUATOR_PASSWORD"
add_user alerting "$MQTT_ALERTING_PASSWORD"
# A device's client id is its login: a device named like a service login, or like the services' client ids
# (telestack-...), could take a service's session. Refuse such names.
check_device() {  # device id
    case "$1" in
        mqtt-bridge|mqtt-bridge-*|actuator|alerting|healthcheck|telestack*|'')
            echo "telestack: device login '$1' is reserved for services; rename the device" >&2
            exit 1 ;;
    esac
}
if [ -n "${MQTT_SIMULATOR_PASSWORD:-}" ]; then
    for device in ${MQTT_SIMULATED_DEVICES:-}; do
        check_device "$device"
        add_user "$device" "$(printf '%s:%s' "$device" "$MQTT_SIMULATOR_PASSWORD" | sha256sum | cut -c1-64)"
    done
fi
# The healthcheck's login: a fresh random password at every start, readable only here.
healthcheck_password="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
add_user healthcheck "$healthcheck_password"
printf '%s\n' "$healthcheck_password" > "$DATA_DIR/healthcheck.password"
# Real devices: hashed entries made with `mosquitto_passwd mosquitto/devices.passwd <device id>`.
if [ -f "$CONFIG_DIR/devices.passwd" ]; then
    for device in $(cut -d: -f1 "$CONFIG_DIR/devices.passwd"); do
        check_device "$device"
    done
    cat "$CONFIG_DIR/devices.passwd" >> "$passwd.tmp"
fi
mv -f "$passwd.tmp" "$passwd"
cp "$CONFIG_DIR/acl" "$DATA_DIR/acl"

conf="$DATA_DIR/mosquitto.conf"
sed -e "s#/mosquitto/data#$DATA_DIR#g" -e "s#^listener 1883\$#listener ${MQTT_PORT:-1883}#" \
    -e "s#^listener 1884\$#listener ${MQTT_SERVICE_PORT:-1884}#" "$CONFIG_DIR/mosquitto.conf" > "$conf"
if [ -n "${MOSQUITTO_USER:-}" ]; then
    printf 'user %s\n' "$MOSQUITTO_USER" >> "$conf"
fi
if [ -f "$CONFIG_DIR/certs/server.crt" ] && [ -f "$CONFIG_DIR/certs/server.key" ]; then
    sed -e "s#/mosquitto/config#$CONFIG_DIR#g" -e "s#^listener 8883\$#listener ${MQTT_TLS_PORT:-8883}#" \
        "$CONFIG_DIR/tls.conf" >> "$conf"
    echo "telestack: TLS listener on ${MQTT_TLS_PORT:-8883} (certificates in $CONFIG_DIR/certs)"
fi
# Mosquitto drops to its own user before reading these files.
if [ "$(id -u)" = 0 ] && [ -z "${MOSQUITTO_USER:-}" ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto:mosquitto "$DATA_DIR" "$passwd" "$DATA_DIR/acl" "$DATA_DIR/healthcheck.password"
fi
exec mosquitto -c "$conf"

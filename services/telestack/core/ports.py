"""The stack's standard ports, once: each service's HTTP port and the servers' listeners.

Settings defaults (`telestack.core.settings`, each service's ``http`` section), the native servers
(``telestack native``) and the demo (`telestack.demo.stack`) read them here; ``docker-compose.yml`` and the
README spell the same numbers for people (``tests/core/test_ports.py`` checks that all of them agree).

>>> SERVICE_PORTS["mqtt-bridge"], SERVER_PORTS["kafka"]
(9102, 9092)
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

__all__ = ["SERVER_PORTS", "SERVICE_PORTS", "ServerName", "ServiceName"]

ServiceName = Literal["can-gateway", "mqtt-bridge", "influx-writer", "alerting", "kafka-lag", "downsampler", "actuator"]
ServerName = Literal["kafka", "kafka_controller", "mqtt", "mqtt_devices", "influx"]

# Where each service serves /healthz and /metrics (the actuator: its API and /ui too).
SERVICE_PORTS: Final[Mapping[ServiceName, int]] = MappingProxyType(
    {
        "can-gateway": 9101,
        "mqtt-bridge": 9102,
        "influx-writer": 9103,
        "alerting": 9104,
        "kafka-lag": 9105,
        "downsampler": 9106,
        "actuator": 8080,
    }
)

# The servers' listeners, as in compose. Mosquitto: devices on 1883, the standard MQTT port (client id =
# login; `MqttSettings`' default, where a stock broker listens), services on 1884 (never published).
SERVER_PORTS: Final[Mapping[ServerName, int]] = MappingProxyType(
    {"kafka": 9092, "kafka_controller": 9093, "mqtt": 1884, "mqtt_devices": 1883, "influx": 8086}
)

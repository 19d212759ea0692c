"""Prometheus metrics of the MQTT bridge (served on ``/metrics`` by the service runtime).

Created once per process at import, so several bridges in one process (tests) share them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from telestack.mqtt_bridge.errors import REASONS

__all__ = [
    "COMMAND_ACKS",
    "CONNECTED",
    "DEAD_LETTERS",
    "DELIVERY_FAILURES",
    "DISCONNECTS",
    "INFLIGHT",
    "MESSAGES_ACKED",
    "MESSAGES_RECEIVED",
    "POINTS",
    "RECORDS_CONFIRMED",
    "RECORDS_DROPPED",
]

MESSAGES_RECEIVED = Counter("telestack_mqtt_bridge_messages_received_total", "MQTT messages received")
MESSAGES_ACKED = Counter(
    "telestack_mqtt_bridge_messages_acked_total", "QoS 1 MQTT messages acknowledged after Kafka confirmed them"
)
RECORDS_CONFIRMED = Counter(
    "telestack_mqtt_bridge_records_confirmed_total", "Kafka records confirmed by the broker", ["kind"]
)
POINTS = Counter("telestack_mqtt_bridge_points_total", "line protocol points produced to the telemetry topic")
DEAD_LETTERS = Counter(
    "telestack_mqtt_bridge_dead_letters_total", "messages sent to the dead-letter topic, by reason", ["reason"]
)
COMMAND_ACKS = Counter("telestack_mqtt_bridge_command_acks_total", "device command acks forwarded to Kafka")
DELIVERY_FAILURES = Counter(
    "telestack_mqtt_bridge_delivery_failures_total", "Kafka records reported failed (they are produced again)"
)
RECORDS_DROPPED = Counter(
    "telestack_mqtt_bridge_records_dropped_total",
    "messages acknowledged without a record: Kafka refused even their truncated dead letter (see the log)",
)
DISCONNECTS = Counter("telestack_mqtt_bridge_disconnects_total", "unexpected disconnections from the MQTT broker")
CONNECTED = Gauge("telestack_mqtt_bridge_connected", "1 while connected to the MQTT broker")
INFLIGHT = Gauge("telestack_mqtt_bridge_inflight_records", "records produced to Kafka and not yet confirmed")

for _reason in REASONS:
    DEAD_LETTERS.labels(_reason)
for _kind in ("telemetry", "dlq", "commands"):
    RECORDS_CONFIRMED.labels(_kind)

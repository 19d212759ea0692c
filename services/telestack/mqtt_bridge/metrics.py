"""Prometheus metrics of the MQTT bridge (served on ``/metrics`` by the service runtime): one `BridgeMetrics` per
bridge, on its own registry, so several bridges in one process (tests) count apart."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from telestack.core.metrics import ServiceMetrics
from telestack.mqtt_bridge.errors import REASONS

__all__ = ["RECORD_KINDS", "BridgeMetrics"]

RECORD_KINDS = ("telemetry", "dlq", "commands")


class BridgeMetrics(ServiceMetrics):
    """One bridge's metrics; the labels it uses are created up front, so /metrics shows them at 0."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.messages_received = Counter(
            "telestack_mqtt_bridge_messages_received_total", "MQTT messages received", registry=r
        )
        self.messages_acked = Counter(
            "telestack_mqtt_bridge_messages_acked_total",
            "QoS 1 MQTT messages acknowledged after Kafka confirmed them",
            registry=r,
        )
        self.records_confirmed = Counter(
            "telestack_mqtt_bridge_records_confirmed_total",
            "Kafka records confirmed by the broker",
            ["kind"],
            registry=r,
        )
        self.points = Counter(
            "telestack_mqtt_bridge_points_total", "line protocol points produced to the telemetry topic", registry=r
        )
        self.dead_letters = Counter(
            "telestack_mqtt_bridge_dead_letters_total",
            "messages sent to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.command_acks = Counter(
            "telestack_mqtt_bridge_command_acks_total", "device command acks forwarded to Kafka", registry=r
        )
        self.delivery_failures = Counter(
            "telestack_mqtt_bridge_delivery_failures_total",
            "Kafka records reported failed (they are produced again)",
            registry=r,
        )
        self.records_dropped = Counter(
            "telestack_mqtt_bridge_records_dropped_total",
            "messages acknowledged without a record: Kafka refused even their truncated dead letter (see the log)",
            registry=r,
        )
        self.disconnects = Counter(
            "telestack_mqtt_bridge_disconnects_total", "unexpected disconnections from the MQTT broker", registry=r
        )
        self.connected = Gauge("telestack_mqtt_bridge_connected", "1 while connected to the MQTT broker", registry=r)
        self.inflight = Gauge(
            "telestack_mqtt_bridge_inflight_records", "records produced to Kafka and not yet confirmed", registry=r
        )
        for reason in REASONS:
            self.dead_letters.labels(reason)
        for kind in RECORD_KINDS:
            self.records_confirmed.labels(kind)

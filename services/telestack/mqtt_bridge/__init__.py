"""mqtt-bridge: MQTT subscriptions → mapping rules (JSON, plain values, line protocol) → Kafka ``telemetry``.

Device command acks go to Kafka ``commands``; messages that cannot be mapped go to ``telemetry.dlq``.
Each MQTT message is acknowledged only after Kafka confirmed its record (see `bridge`).
"""

from telestack.mqtt_bridge.acks import AckRoute, ack_event, ack_record
from telestack.mqtt_bridge.bridge import MqttBridge
from telestack.mqtt_bridge.errors import MappingError, MqttBridgeError, RuleError
from telestack.mqtt_bridge.mapping import Mapped, map_message
from telestack.mqtt_bridge.rules import Rule, RuleSet, TopicFilter, load_rules, parse_rules
from telestack.mqtt_bridge.settings import BridgeOptions, BridgeSettings

__all__ = [
    "AckRoute",
    "BridgeOptions",
    "BridgeSettings",
    "Mapped",
    "MappingError",
    "MqttBridge",
    "MqttBridgeError",
    "Rule",
    "RuleError",
    "RuleSet",
    "TopicFilter",
    "ack_event",
    "ack_record",
    "load_rules",
    "map_message",
    "parse_rules",
]

"""``telestack mqtt-bridge``: MQTT devices → mapping rules → Kafka ``telemetry`` (and device acks → ``commands``)."""

from __future__ import annotations

import argparse

from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.kafka import KafkaProducer, ensure_topics
from telestack.core.runtime import service_runtime
from telestack.mqtt_bridge.bridge import MqttBridge
from telestack.mqtt_bridge.rules import load_rules
from telestack.mqtt_bridge.settings import BridgeSettings

__all__ = ["configure", "run"]

# Partitions of the topics the bridge writes, when it is the one creating them.
TOPIC_PARTITIONS = 6


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, BridgeSettings)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(BridgeSettings, args)
    rules = load_rules(settings.mqtt_bridge.rules_file)
    topics = settings.kafka.topics
    with service_runtime("mqtt-bridge", settings.log, settings.mqtt_bridge.http) as rt:
        ensure_topics(settings.kafka, {topics.telemetry: TOPIC_PARTITIONS, topics.dlq: 1, topics.commands: 3})
        producer = KafkaProducer(settings.kafka)
        bridge = MqttBridge(settings, rules, producer, log=rt.log)
        rt.health.add_check("mqtt", bridge.mqtt_health)
        rt.health.add_check("kafka", bridge.kafka_health)
        try:
            bridge.run(rt.shutdown)
        finally:
            producer.close(timeout_s=5)
    return 0

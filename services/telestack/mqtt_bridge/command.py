"""``telestack mqtt-bridge``: MQTT devices → mapping rules → Kafka ``telemetry`` (and device acks → ``commands``)."""

from __future__ import annotations

import argparse

from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.kafka import KafkaProducer
from telestack.core.runtime import service_runtime
from telestack.core.topics import require_topics
from telestack.mqtt_bridge.bridge import MqttBridge
from telestack.mqtt_bridge.rules import load_rules
from telestack.mqtt_bridge.settings import BridgeSettings

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, BridgeSettings)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(BridgeSettings, args)
    rules = load_rules(settings.mqtt_bridge.rules_file)
    topics = settings.kafka.topics
    with service_runtime("mqtt-bridge", settings.log, settings.mqtt_bridge.http) as rt:
        require_topics(settings.kafka, [topics.telemetry, topics.dlq, topics.commands])
        producer = KafkaProducer(settings.kafka)
        bridge = MqttBridge(settings, rules, producer, log=rt.log)
        rt.health.add_check("mqtt", bridge.mqtt_health)
        rt.health.add_check("kafka", bridge.kafka_health)
        try:
            bridge.run(rt.shutdown)
        finally:
            producer.close(timeout_s=5)
    return 0

"""``telestack mqtt-bridge``: MQTT devices → mapping rules → Kafka ``telemetry`` (and device acks → ``commands``)."""

from __future__ import annotations

import argparse

from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.kafka import KafkaProducer
from telestack.core.runtime import Check, Logger, Shutdown
from telestack.core.service import ServiceBase, run_service
from telestack.core.topics import require_topics
from telestack.mqtt_bridge.bridge import MqttBridge
from telestack.mqtt_bridge.rules import RuleSet, load_rules
from telestack.mqtt_bridge.settings import BridgeSettings

__all__ = ["BridgeService", "configure", "run"]


class BridgeService(ServiceBase):
    """The bridge and the Kafka producer it owns."""

    name = "mqtt-bridge"

    def __init__(self, settings: BridgeSettings, rules: RuleSet, log: Logger | None = None) -> None:
        self.producer = KafkaProducer(settings.kafka)
        self.bridge = MqttBridge(settings, rules, self.producer, log=log)
        self.metrics = self.bridge.metrics

    def health(self) -> list[Check]:
        return [Check.of("mqtt", self.bridge.mqtt_health), Check.of("kafka", self.bridge.kafka_health)]

    def run(self, shutdown: Shutdown) -> int:
        self.bridge.run(shutdown)
        return 0

    def _close(self) -> None:
        self.producer.close(timeout_s=5)


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, BridgeSettings)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(BridgeSettings, args)
    rules = load_rules(settings.mqtt_bridge.rules_file)  # a bad rules file stops here, naming the line

    def build(log: Logger) -> BridgeService:
        topics = settings.kafka.topics
        require_topics(settings.kafka, [topics.telemetry, topics.dlq, topics.commands])
        return BridgeService(settings, rules, log)

    return run_service("mqtt-bridge", settings, build, http=settings.mqtt_bridge.http)

"""Fixtures of the MQTT bridge tests: the shipped rules and the seeds' recorded payloads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml

from telestack.core.kafka import ensure_topics
from telestack.core.mqtt import connect, make_client
from telestack.core.settings import KafkaSettings, MqttSettings, TopicSettings
from telestack.mqtt_bridge.command import BridgeService
from telestack.mqtt_bridge.rules import RuleSet, load_rules
from telestack.mqtt_bridge.settings import BridgeOptions, BridgeSettings
from tests.harness import RunningService
from tests.kafka_reader import TopicReader
from tests.polling import wait_until

REPO = Path(__file__).resolve().parents[2]
SHIPPED_RULES = REPO / "config" / "mqtt-bridge.yaml"
SEED_PAYLOADS = REPO / "tests" / "data" / "mqtt_bridge" / "seed_payloads.yaml"


@dataclass(frozen=True)
class SeedCase:
    name: str
    topic: str
    payload: bytes
    key: str
    lines: tuple[str, ...]

    def expected(self, arrival_ns: int) -> str:
        """The record value the bridge must produce, for a message that arrived at `arrival_ns`."""
        return "".join(line.replace("ARRIVAL", str(arrival_ns)) + "\n" for line in self.lines)


def seed_cases() -> list[SeedCase]:
    raw = yaml.safe_load(SEED_PAYLOADS.read_text())
    return [SeedCase(c["name"], c["topic"], c["payload"].encode(), c["key"], tuple(c["lines"])) for c in raw]


@pytest.fixture(scope="session")
def shipped_rules() -> RuleSet:
    return load_rules(SHIPPED_RULES)


# --- integration helpers --------------------------------------------------------------------------------


@dataclass
class BridgeHarness:
    """Topics, settings and helpers for one test: bridges started here are stopped at teardown."""

    kafka: KafkaSettings
    mqtt: MqttSettings
    prefix: str
    unique: str
    bridges: list[RunningService[BridgeService]] = field(default_factory=list)
    collectors: list[TopicReader] = field(default_factory=list)

    @property
    def topics(self) -> TopicSettings:
        return self.kafka.topics

    def settings(self, mqtt: MqttSettings | None = None, **options: Any) -> BridgeSettings:
        defaults: dict[str, Any] = {
            "client_id": f"bridge-{self.unique}",
            "ack_topic": f"{self.prefix}/devices/{{device}}/ack",
            "drain_timeout_s": 5,
        }
        return BridgeSettings(
            kafka=self.kafka, mqtt=mqtt or self.mqtt, mqtt_bridge=BridgeOptions(**{**defaults, **options})
        )

    def start(
        self, rules: RuleSet, settings: BridgeSettings | None = None, *, wait: bool = True
    ) -> RunningService[BridgeService]:
        running = RunningService(BridgeService(settings or self.settings(), rules))
        self.bridges.append(running)
        if wait:
            bridge = running.service.bridge
            wait_until(lambda: bridge.connected, timeout_s=20, what="bridge connected to MQTT")
            wait_until(lambda: bridge.subscribed, what="bridge subscribed")
        return running

    def collector(self) -> TopicReader:
        """A reader of this test's telemetry, dead-letter and commands topics, closed at teardown."""
        collector = TopicReader(self.kafka, [self.topics.telemetry, self.topics.dlq, self.topics.commands])
        self.collectors.append(collector)
        return collector

    def publisher(self, mqtt: MqttSettings | None = None) -> paho.Client:
        settings = mqtt or self.mqtt
        client = make_client(settings, client_id=f"pub-{uuid.uuid4().hex[:10]}")
        client.max_inflight_messages_set(200)
        connect(client, settings)
        self._publishers.append(client)
        return client

    def __post_init__(self) -> None:
        self._publishers: list[paho.Client] = []

    def close(self) -> None:
        for running in self.bridges:
            running.stop()
        for collector in self.collectors:
            collector.close()
        for client in self._publishers:
            client.disconnect()
            client.loop_stop()


def prefixed(rules: RuleSet, prefix: str) -> RuleSet:
    """The same rules under a topic prefix, so a test has its own topics on the shared broker."""
    return RuleSet([c.rule.model_copy(update={"topic": f"{prefix}/{c.rule.topic}"}) for c in rules.rules])


@pytest.fixture
def harness(kafka_settings: KafkaSettings, mqtt_settings: MqttSettings, unique: str) -> Iterator[BridgeHarness]:
    topics = TopicSettings(
        telemetry=f"telemetry-{unique}", dlq=f"telemetry.dlq-{unique}", commands=f"commands-{unique}"
    )
    kafka = kafka_settings.model_copy(update={"topics": topics})
    ensure_topics(kafka, {topics.telemetry: 3, topics.dlq: 1, topics.commands: 1})
    harness = BridgeHarness(kafka, mqtt_settings, f"test/{unique}", unique)
    yield harness
    harness.close()

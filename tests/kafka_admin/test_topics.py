"""The Kafka topic layout: pure plan, then created on real Kafka with its configuration checked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from confluent_kafka.admin import ConfigResource

from telestack.core.kafka import admin_client
from telestack.core.settings import KafkaSettings, TopicSettings
from telestack.kafka_admin.topics import TopicLayout, TopicSpec, create_topics, plan_topics
from telestack.native.endpoints import KafkaEndpoint


def _names(unique: str) -> TopicSettings:
    return TopicSettings(
        telemetry=f"telemetry-{unique}",
        dlq=f"dlq-{unique}",
        can_raw=f"can-raw-{unique}",
        alerts=f"alerts-{unique}",
        commands=f"commands-{unique}",
        alerts_state=f"alerts-state-{unique}",
    )


def test_plan_gives_every_topic_its_retention_and_the_state_topic_compaction() -> None:
    plans = {p.name: p for p in plan_topics(KafkaSettings(), TopicLayout())}
    assert set(plans) == {"telemetry", "telemetry.dlq", "can.raw", "alerts", "commands", "alerts.state"}
    assert plans["telemetry"].partitions == 6
    assert plans["telemetry"].config == {"retention.ms": str(7 * 86_400_000)}
    assert plans["can.raw"].config["retention.ms"] == str(3 * 86_400_000)
    assert plans["alerts.state"].config["cleanup.policy"] == "compact"
    assert plans["alerts.state"].config["retention.ms"] == "-1"
    assert all("min.insync.replicas" not in p.config for p in plans.values())  # one broker


def test_replicated_layout_asks_two_in_sync_replicas() -> None:
    layout = TopicLayout(replication_factor=3, min_insync_replicas=2, telemetry=TopicSpec(partitions=12))
    plans = {p.name: p for p in plan_topics(KafkaSettings(), layout)}
    assert plans["telemetry"].partitions == 12
    assert {p.config["min.insync.replicas"] for p in plans.values()} == {"2"}


def test_a_bad_retention_is_refused() -> None:
    with pytest.raises(ValueError, match="retention"):
        TopicSpec(partitions=1, retention="7 days")


def _configs(kafka: KafkaSettings, topic: str) -> dict[str, str]:
    admin = admin_client(kafka)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(30)
    return {name: entry.value for name, entry in entries.items()}


def test_create_topics_on_kafka(kafka: KafkaEndpoint, unique: str) -> None:
    settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, topics=_names(unique))
    layout = TopicLayout()
    created = create_topics(settings, layout)
    assert set(created) == {p.name for p in plan_topics(settings, layout)}
    metadata = admin_client(settings).list_topics(timeout=30)
    assert len(metadata.topics[f"telemetry-{unique}"].partitions) == 6
    assert _configs(settings, f"can-raw-{unique}")["retention.ms"] == str(3 * 86_400_000)
    state = _configs(settings, f"alerts-state-{unique}")
    assert state["cleanup.policy"] == "compact"
    assert create_topics(settings, layout) == []  # idempotent: existing topics are left alone


def test_topics_command(kafka: KafkaEndpoint, unique: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TELESTACK_")},
        "TELESTACK_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        **{
            f"TELESTACK_KAFKA__TOPICS__{key.upper()}": name
            for key, name in _names(unique).model_dump().items()
            if key != "alerts_state"
        },
        "TELESTACK_TOPIC_LAYOUT__TELEMETRY__PARTITIONS": "4",
        "TELESTACK_TOPIC_LAYOUT__TELEMETRY__RETENTION": "2d",
        # The state topic's former setting (before kafka.topics.alerts_state): users' .env files keep working.
        "TELESTACK_TOPIC_LAYOUT__ALERTS_STATE_NAME": f"alerts-state-{unique}",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "telestack", "topics", "create"], env=env, capture_output=True, text=True, timeout=90
    )
    assert proc.returncode == 0, proc.stderr
    assert f"telemetry-{unique}" in proc.stdout and "partitions=4" in proc.stdout
    settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers)
    assert len(admin_client(settings).list_topics(timeout=30).topics[f"telemetry-{unique}"].partitions) == 4
    assert _configs(settings, f"telemetry-{unique}")["retention.ms"] == str(2 * 86_400_000)
    assert _configs(settings, f"alerts-state-{unique}")["cleanup.policy"] == "compact"

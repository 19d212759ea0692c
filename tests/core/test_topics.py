"""The topic layout lives once in core; services check the topics they use instead of creating them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from telestack.alerting.settings import AlertingSettings
from telestack.core.kafka import admin_client
from telestack.core.settings import KafkaSettings, TopicSettings
from telestack.core.topics import TopicLayout, TopicsMissing, create_topics, missing_topics, require_topics
from telestack.kafka_admin.topics import TopicsSettings
from telestack.native.endpoints import KafkaEndpoint


def _names(unique: str) -> TopicSettings:
    return TopicSettings(**{key: f"{name}-{unique}" for key, name in TopicSettings().model_dump().items()})


def test_a_missing_topic_is_named_with_the_command_that_creates_it(kafka_settings: KafkaSettings, unique: str) -> None:
    kafka = kafka_settings.model_copy(update={"topics": _names(unique)})
    wanted = [kafka.topics.telemetry, kafka.topics.dlq]
    with pytest.raises(TopicsMissing, match="telestack topics create") as raised:
        require_topics(kafka, wanted)
    assert raised.value.missing == sorted(wanted)
    assert missing_topics(kafka, wanted) == sorted(wanted)  # asking created nothing
    create_topics(kafka, TopicLayout())
    require_topics(kafka, wanted)


def test_the_bridge_refuses_to_start_without_its_topics_and_creates_none(kafka: KafkaEndpoint, unique: str) -> None:
    """It used to create the DLQ with 1 partition (the layout says 3) and every topic with one replica."""
    names = _names(unique)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TELESTACK_")},
        "TELESTACK_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        **{f"TELESTACK_KAFKA__TOPICS__{key.upper()}": name for key, name in names.model_dump().items()},
    }
    proc = subprocess.run(
        [sys.executable, "-m", "telestack", "mqtt-bridge", "--mqtt-bridge.http.port=0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode != 0
    assert f"{names.dlq}" in proc.stderr and "telestack topics create" in proc.stderr
    existing = admin_client(KafkaSettings(bootstrap_servers=kafka.bootstrap_servers)).list_topics(timeout=30).topics
    assert not {names.telemetry, names.dlq, names.commands} & set(existing)


def test_the_state_topic_has_one_name_and_its_former_settings_still_name_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("TELESTACK_")]:
        monkeypatch.delenv(key)
    assert AlertingSettings().kafka.topics.alerts_state == "alerts.state"
    monkeypatch.setenv("TELESTACK_ALERTING__STATE_TOPIC", "old-alerting-name")
    assert AlertingSettings().kafka.topics.alerts_state == "old-alerting-name"
    monkeypatch.setenv("TELESTACK_KAFKA__TOPICS__ALERTS_STATE", "new-name")  # the one place wins
    assert AlertingSettings().kafka.topics.alerts_state == "new-name"
    monkeypatch.delenv("TELESTACK_ALERTING__STATE_TOPIC")
    monkeypatch.delenv("TELESTACK_KAFKA__TOPICS__ALERTS_STATE")
    monkeypatch.setenv("TELESTACK_TOPIC_LAYOUT__ALERTS_STATE_NAME", "old-layout-name")
    assert TopicsSettings().kafka.topics.alerts_state == "old-layout-name"
    assert TopicsSettings().kafka.bootstrap_servers == KafkaSettings().bootstrap_servers  # the rest keeps defaults

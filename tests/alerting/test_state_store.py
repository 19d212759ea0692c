"""The durable state store on a real compacted Kafka topic."""

from __future__ import annotations

from telestack.alerting.state_store import KafkaStateStore
from telestack.core.kafka import KafkaProducer, admin_client, ensure_topics
from telestack.core.settings import KafkaSettings
from telestack.core.topics import COMPACT_CONFIG


def test_latest_record_per_instance_survives_and_tombstones_delete(kafka_settings: KafkaSettings, unique: str) -> None:
    topic = f"alerts.state-{unique}"
    producer = KafkaProducer(kafka_settings)
    store = KafkaStateStore(kafka_settings, topic, producer)
    ensure_topics(kafka_settings, {topic: 1}, config={topic: COMPACT_CONFIG})
    assert store.load() == {}
    store.save("a", {"fingerprint": "a", "state": "pending"})
    store.save("a", {"fingerprint": "a", "state": "firing"})
    store.save("b", {"fingerprint": "b", "state": "firing"})
    store.save("c", {"fingerprint": "c", "state": "normal"})
    store.save("b", None)
    assert store.flush(10)
    producer.close()

    reader = KafkaStateStore(kafka_settings, topic)  # a fresh process reads it back
    assert reader.load() == {"a": {"fingerprint": "a", "state": "firing"}, "c": {"fingerprint": "c", "state": "normal"}}
    from confluent_kafka.admin import ConfigResource

    admin = admin_client(kafka_settings)
    [future] = admin.describe_configs([ConfigResource("topic", topic)]).values()
    assert future.result(timeout=30)["cleanup.policy"].value == "compact"


def test_missing_topic_loads_empty(kafka_settings: KafkaSettings, unique: str) -> None:
    assert KafkaStateStore(kafka_settings, f"never-created-{unique}").load(timeout_s=10) == {}

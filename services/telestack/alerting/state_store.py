"""Durable alert state: one record per alert instance, keyed by fingerprint, in a compacted Kafka topic.

Compaction keeps the latest record of every key, so reading the topic from the beginning to its end
gives the state of every instance as the last run left it: what was firing, since when, and what each
notifier was last told (so a restart neither repeats nor forgets a notification). `MemoryStateStore` is
the same interface for unit tests.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import confluent_kafka
from confluent_kafka import KafkaException, TopicPartition

from telestack.alerting.errors import StateStoreError
from telestack.core.kafka import Delivery, KafkaProducer
from telestack.core.settings import KafkaSettings

__all__ = ["KafkaStateStore", "MemoryStateStore", "StateStore"]


class StateStore(Protocol):
    def load(self) -> dict[str, dict[str, Any]]:
        """The latest record of every instance, by fingerprint."""
        ...

    def save(self, fingerprint: str, record: dict[str, Any] | None) -> None:
        """Queue the latest record of an instance (None deletes it)."""
        ...

    def flush(self, timeout_s: float = 10) -> bool:
        """Wait until every saved record is durable; False on timeout."""
        ...


class MemoryStateStore:
    """A `StateStore` in a dict (unit tests)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.saves = 0

    def load(self) -> dict[str, dict[str, Any]]:
        return {key: json.loads(json.dumps(value)) for key, value in self.records.items()}

    def save(self, fingerprint: str, record: dict[str, Any] | None) -> None:
        self.saves += 1
        if record is None:
            self.records.pop(fingerprint, None)
        else:
            self.records[fingerprint] = json.loads(json.dumps(record))

    def flush(self, timeout_s: float = 10) -> bool:
        return True


class KafkaStateStore:
    """A `StateStore` on a compacted topic; writes go through the service's producer."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        producer: KafkaProducer | None = None,
        *,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self._producer = producer
        self._on_error = on_error
        self.failed = 0

    def load(self, timeout_s: float = 30) -> dict[str, dict[str, Any]]:
        """Read the topic from its beginning to its current end."""
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "client.id": f"{self.settings.client_id}-alert-state",
                "group.id": f"telestack-alert-state-reader-{uuid.uuid4().hex[:8]}",  # never commits
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                **self.settings.config,
            }
        )
        records: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        try:
            metadata = consumer.list_topics(self.topic, timeout=timeout_s)
            topic_meta = metadata.topics.get(self.topic)
            if topic_meta is None or topic_meta.error is not None or not topic_meta.partitions:
                return records
            remaining: set[int] = set()
            assignment = []
            for partition in topic_meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=timeout_s)
                if high > low:
                    remaining.add(partition)
                    assignment.append(TopicPartition(self.topic, partition, confluent_kafka.OFFSET_BEGINNING))
            if not assignment:
                return records
            consumer.assign(assignment)
            while remaining:
                if time.monotonic() > deadline:
                    raise StateStoreError(f"reading alert state from {self.topic} took over {timeout_s:.0f} s")
                for msg in consumer.consume(num_messages=1000, timeout=0.5):
                    err = msg.error()
                    if err is not None:
                        if err.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                            remaining.discard(msg.partition() or 0)
                            continue
                        raise StateStoreError(f"reading alert state from {self.topic}: {err}")
                    key = (msg.key() or b"").decode("utf-8", "replace")
                    value = msg.value()
                    if value is None:
                        records.pop(key, None)
                        continue
                    try:
                        records[key] = json.loads(value)
                    except json.JSONDecodeError:
                        continue  # a record we cannot read is a record we start over
        except KafkaException as exc:
            raise StateStoreError(f"cannot read alert state from {self.topic}: {exc}") from exc
        finally:
            consumer.close()
        return records

    def _delivered(self, delivery: Delivery) -> None:
        if not delivery.ok:
            self.failed += 1
            if self._on_error is not None:
                self._on_error(f"alert state write failed: {delivery.error}")

    def save(self, fingerprint: str, record: dict[str, Any] | None) -> None:
        if self._producer is None:
            raise StateStoreError("this KafkaStateStore was opened read-only")
        # None is a tombstone: compaction then forgets the instance.
        value = None if record is None else json.dumps(record, separators=(",", ":")).encode()
        self._producer.produce(self.topic, value, key=fingerprint, on_delivery=self._delivered)  # type: ignore[arg-type]

    def flush(self, timeout_s: float = 10) -> bool:
        if self._producer is None:
            return True
        return self._producer.flush(timeout_s) == 0

"""Durable alert state: one record per alert instance, keyed by fingerprint, in a compacted Kafka topic.

Compaction keeps the latest record of every key, so reading the topic from the beginning to its end
gives the state of every instance as the last run left it: what was firing, since when, and what each
notifier was last told (so a restart neither repeats nor forgets a notification). `MemoryStateStore` is
the same interface for unit tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from telestack.alerting.errors import StateStoreError
from telestack.core.errors import KafkaError, TopicNotFound
from telestack.core.kafka import Delivery, KafkaProducer
from telestack.core.settings import KafkaSettings
from telestack.core.topic_reader import read_to_end

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
        """Read the topic from its beginning to its current end (`timeout_s`: the longest wait for progress)."""
        records: dict[str, dict[str, Any]] = {}
        try:
            for record in read_to_end(self.settings, self.topic, purpose="alert-state", stall_timeout_s=timeout_s):
                key = (record.key or b"").decode("utf-8", "replace")
                if not record.value:  # a tombstone: the instance was deleted
                    records.pop(key, None)
                    continue
                try:
                    records[key] = json.loads(record.value)
                except json.JSONDecodeError:
                    continue  # a record we cannot read is a record we start over
        except TopicNotFound:
            return {}  # nothing saved yet (alerting checks at start that the topic exists)
        except KafkaError as exc:
            raise StateStoreError(f"cannot read alert state: {exc}") from exc
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

"""The producer side of librdkafka issue 5301 (issue 13): a client that lost the cluster for good is replaced
when a fresh client reaches it, and each of its records is reported failed once, so the caller sends it again.

Pure unit tests: librdkafka's client is replaced by a fake one (the stuck state cannot be produced on demand
with a real broker: it needs a KRaft broker fenced at the moment a frozen client asks for metadata).
"""

from __future__ import annotations

from typing import Any

import confluent_kafka
import pytest

import telestack.core.kafka as core_kafka
from telestack.core.kafka import Delivery, KafkaProducer
from telestack.core.settings import KafkaSettings


class FakeMessage:
    def __init__(self, topic: str, value: bytes | None, key: bytes | None) -> None:
        self._topic, self._value, self._key = topic, value, key

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


class FakeClient:
    """librdkafka's producer as the watch sees it: a queue, delivery reports on poll, metadata, purge."""

    created: list[FakeClient] = []
    answers_by_default = True

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.queue: list[tuple[FakeMessage, Any]] = []
        self.answers = FakeClient.answers_by_default  # list_topics succeeds
        self.delivers = True  # poll confirms what is queued
        self.purged = False
        self.events = 0  # error events queued beside the records (librdkafka counts both in len())
        FakeClient.created.append(self)

    def produce(self, topic: str, *, key: Any = None, value: Any = None, on_delivery: Any = None, **_: Any) -> None:
        self.queue.append((FakeMessage(topic, value, key), on_delivery))

    def poll(self, timeout: float = 0) -> int:
        if not (self.delivers or self.purged):
            return 0
        served, self.queue = self.queue, []
        for msg, callback in served:
            err = confluent_kafka.KafkaError(confluent_kafka.KafkaError._PURGE_QUEUE) if self.purged else None
            callback(err, msg)
        return len(served)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return len(self.queue)

    def __len__(self) -> int:
        return len(self.queue) + self.events

    def list_topics(self, timeout: float = -1) -> object:
        if not self.answers:
            raise confluent_kafka.KafkaException(confluent_kafka.KafkaError(confluent_kafka.KafkaError._TRANSPORT))
        return object()

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        self.purged = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_clients(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    FakeClient.created = []
    FakeClient.answers_by_default = True
    monkeypatch.setattr(core_kafka.confluent_kafka, "Producer", FakeClient)
    return FakeClient


def _stuck_producer(clock: Clock) -> tuple[KafkaProducer, FakeClient, list[tuple[str, Delivery]]]:
    producer = KafkaProducer(KafkaSettings(bootstrap_servers="127.0.0.1:9"), clock=clock)
    client = FakeClient.created[-1]
    client.delivers = False
    client.answers = False  # it forgot every broker
    deliveries: list[tuple[str, Delivery]] = []
    for i in range(3):
        producer.produce(
            "telemetry", f"m seq={i}i", key="d1", on_delivery=lambda d, i=i: deliveries.append((str(i), d))
        )
    return producer, client, deliveries


def test_a_stuck_client_is_replaced_and_its_records_are_sent_again(fake_clients: type[FakeClient]) -> None:
    clock = Clock()
    producer, stuck, deliveries = _stuck_producer(clock)
    clock.now += core_kafka.PRODUCER_STUCK_AFTER_S - 1
    producer.poll(0)
    assert producer.replacements == 0 and deliveries == []  # not yet: Kafka may just be slow

    clock.now += 2
    producer.poll(0)
    assert producer.replacements == 1
    assert stuck.purged
    # Each record reported once, as failed and not rejected: the caller owns it again.
    assert [(i, d.ok, d.rejected) for i, d in deliveries] == [
        ("0", False, False),
        ("1", False, False),
        ("2", False, False),
    ]
    fresh = fake_clients.created[-1]
    assert fresh is not stuck and producer._producer is fresh

    for i, delivery in list(deliveries):
        assert delivery.key == b"d1"
        producer.produce("telemetry", f"m seq={i}i", key="d1", on_delivery=lambda d, i=i: deliveries.append((i, d)))
    producer.poll(0)
    assert [(i, d.ok) for i, d in deliveries[3:]] == [("0", True), ("1", True), ("2", True)]
    assert producer.pending() == 0


def test_no_replacement_while_no_client_reaches_kafka(fake_clients: type[FakeClient]) -> None:
    """Kafka itself is away (every client fails): replacing the client would only churn; checks back off."""
    clock = Clock()
    producer, stuck, deliveries = _stuck_producer(clock)
    fake_clients.answers_by_default = False  # the probe clients do not reach Kafka either
    for _ in range(10):
        clock.now += core_kafka.PRODUCER_STUCK_AFTER_S + 1
        producer.poll(0)
    assert producer.replacements == 0 and not stuck.purged and deliveries == []
    probes = len(fake_clients.created) - 1
    assert 0 < probes < 10  # the check period doubled
    assert producer.last_error == "no Kafka broker answers"


def test_a_client_that_still_has_brokers_is_kept(fake_clients: type[FakeClient]) -> None:
    """No delivery, but the client's own metadata request answers: a slow cluster, not a lost one."""
    clock = Clock()
    producer, stuck, _deliveries = _stuck_producer(clock)
    stuck.answers = True
    clock.now += core_kafka.PRODUCER_STUCK_AFTER_S + 1
    producer.poll(0)
    assert producer.replacements == 0 and not stuck.purged
    assert len(fake_clients.created) == 1  # no probe needed


def test_an_idle_producer_is_never_stuck(fake_clients: type[FakeClient]) -> None:
    clock = Clock()
    producer = KafkaProducer(KafkaSettings(bootstrap_servers="127.0.0.1:9"), clock=clock)
    fake_clients.created[-1].answers = False
    for _ in range(5):
        clock.now += 10 * core_kafka.PRODUCER_STUCK_AFTER_S
        producer.poll(0)
    assert producer.replacements == 0 and len(fake_clients.created) == 1


def test_pending_counts_records_not_the_clients_error_events(fake_clients: type[FakeClient]) -> None:
    """ci61: against a dead broker librdkafka queued one error event per refused reconnect, and len(client) rose
    2 -> 9 in 2 s with no record queued. pending() and flush() count records until their callback has run."""
    clock = Clock()
    producer = KafkaProducer(KafkaSettings(bootstrap_servers="127.0.0.1:9"), clock=clock)
    client = fake_clients.created[-1]
    client.delivers = False
    client.events = 7
    outcomes: list[Delivery] = []
    for i in range(3):
        producer.produce("telemetry", f"m seq={i}i", on_delivery=outcomes.append)
    assert producer.pending() == 3 and len(client) == 10
    assert producer.flush(0) == 3
    client.delivers = True
    assert producer.flush(0) == 0 and len(outcomes) == 3
    assert producer.pending() == 0 and len(client) == 7  # the events alone are not records

    client.answers = False
    for _ in range(5):  # nothing waits but events: not a stuck client, and no probe
        clock.now += 10 * core_kafka.PRODUCER_STUCK_AFTER_S
        producer.poll(0)
    assert producer.replacements == 0 and len(fake_clients.created) == 1

"""The tests' Kafka reader: what a test checks on Kafka, read from the beginning of each topic in no consumer group.

Each topic is assigned whole (`telestack.core.topic_reader`, as the product's readers do), not subscribed through a
group: a group's first join waits for Kafka's group coordinator, and on a loaded machine its load outlasted the
tests' waits (ci30: the actuator's audit test read 0 records, the command's events already there; it is one
candidate cause of ci54's bridge test failure). Tests of consumer groups themselves (`tests/core/test_kafka.py`,
the lag and freeze tests) use their groups, not this.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType

import confluent_kafka
import pytest

from telestack.core.kafka import Record
from telestack.core.settings import KafkaSettings
from telestack.core.topic_reader import assign_from, reader_consumer
from tests.polling import wait_until


class TopicReader:
    """Reads the records of some topics, from the beginning, into a list per topic (`records`).

    A failed `until` says how far it got: the records read per topic, each partition's position and Kafka's
    last errors.
    """

    def __init__(self, kafka: KafkaSettings, topics: Sequence[str]) -> None:
        self.records: dict[str, list[Record]] = {topic: [] for topic in topics}
        self.errors: deque[str] = deque(maxlen=20)
        self.consumers: dict[str, confluent_kafka.Consumer] = {}
        try:
            for topic in topics:
                consumer = reader_consumer(kafka, "test-reader", error_cb=lambda err: self.errors.append(str(err)))
                self.consumers[topic] = consumer
                assign_from(consumer, topic, timeout_s=30)
        except BaseException:
            self.close()
            raise

    def poll(self, timeout_s: float = 0.05) -> None:
        """Read what each topic has now, waiting up to `timeout_s` per topic for more."""
        for topic, consumer in self.consumers.items():
            for message in consumer.consume(1000, timeout_s):
                if message.error() is None:
                    self.records[topic].append(Record.from_message(message))
                else:
                    self.errors.append(str(message.error()))

    def until(self, condition: Callable[[], object], timeout_s: float = 30, what: str = "") -> None:
        """Read until `condition()` holds; fail the test after `timeout_s`, saying how far the reading got."""

        def check() -> object:
            self.poll()
            return condition()

        try:
            wait_until(check, timeout_s=timeout_s, interval_s=0.01, what=what or "records in Kafka")
        except pytest.fail.Exception as exc:  # say how far it got (ci54 said only "last value: False")
            read = {topic: len(records) for topic, records in self.records.items()}
            positions = {
                topic: [(tp.partition, tp.offset) for tp in consumer.position(consumer.assignment())]
                for topic, consumer in self.consumers.items()
            }
            pytest.fail(f"{exc}; read so far: {read}; positions: {positions}; Kafka errors: {list(self.errors)}")

    def close(self) -> None:
        for consumer in self.consumers.values():
            consumer.close()
        self.consumers.clear()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_topic(
    kafka: KafkaSettings, topic: str, done: Callable[[list[Record]], object], timeout_s: float = 60, what: str = ""
) -> list[Record]:
    """Every record of `topic` from its beginning, read until `done(records)` holds (else the test fails)."""
    with TopicReader(kafka, [topic]) as reader:
        reader.until(lambda: done(reader.records[topic]), timeout_s, what or f"records of {topic}")
        return reader.records[topic]

"""read_to_end on real Kafka: the records present at the start, every partition, across offset gaps."""

from __future__ import annotations

import time

import confluent_kafka
import pytest

from telestack.core.errors import KafkaError
from telestack.core.kafka import KafkaProducer, ensure_topics
from telestack.core.settings import KafkaSettings
from telestack.core.topic_reader import read_to_end, reader_consumer
from tests.polling import wait_until


def test_reads_every_partition_to_its_end_at_the_start_and_not_beyond(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    topic = f"read-to-end-{unique}"
    ensure_topics(kafka_settings, {topic: 3})
    producer = KafkaProducer(kafka_settings)
    for i in range(20):
        producer.produce(topic, f"v{i}", key="same-key" if i % 2 else f"k{i}")  # some partitions get more
    assert producer.flush(10) == 0
    reader = read_to_end(kafka_settings, topic, purpose="test")
    first = next(reader)
    for i in range(20, 30):  # written after the reading started: past the end
        producer.produce(topic, f"v{i}", key=f"k{i}")
    assert producer.flush(10) == 0
    values = {first.value} | {record.value for record in reader}
    assert values == {f"v{i}".encode() for i in range(20)}


def test_an_empty_topic_ends_at_once_and_a_missing_one_is_an_error(kafka_settings: KafkaSettings, unique: str) -> None:
    ensure_topics(kafka_settings, {f"empty-{unique}": 2})
    assert list(read_to_end(kafka_settings, f"empty-{unique}", purpose="test")) == []
    with pytest.raises(KafkaError, match=f"missing-{unique}"):
        list(read_to_end(kafka_settings, f"missing-{unique}", purpose="test", stall_timeout_s=5))


def test_a_transaction_marker_after_the_last_record_does_not_stall_the_read(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    """The commit marker takes the last offset: no record has offset high - 1 (can-replay waited for one until
    its no-progress timeout, then failed).

    (On the docker backend the commit marker was never written until its test broker got a listener of its own
    for inter-broker traffic: it advertised only the host-mapped port, unreachable from inside the container.)
    """
    topic = f"read-to-end-txn-{unique}"
    ensure_topics(kafka_settings, {topic: 1})
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": kafka_settings.bootstrap_servers, "transactional.id": f"txn-{unique}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=f"t{i}".encode())
    producer.commit_transaction(30)
    # The commit marker is written after commit_transaction returns; until then the records are not stable.
    probe = reader_consumer(kafka_settings, "probe")
    partition = confluent_kafka.TopicPartition(topic, 0)
    wait_until(lambda: probe.get_watermark_offsets(partition, timeout=5)[1] == 6, timeout_s=20, what="the marker")
    probe.close()
    producer.flush(10)
    del producer  # closed: a transactional producer left behind would hold its client open
    started = time.monotonic()
    records = list(read_to_end(kafka_settings, topic, purpose="test", stall_timeout_s=120))
    assert [r.value for r in records] == [f"t{i}".encode() for i in range(5)]
    # Ended by the position, not by the stall timeout: far below it even on a loaded machine (a fixed 5 s against
    # a 5 s stall timeout failed on CI's docker backend).
    assert time.monotonic() - started < 60

"""Kafka wrappers against a real broker: confirmed deliveries, commit-after-processing, full local queue."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from telestack.core.errors import DeliveryError, KafkaError
from telestack.core.kafka import Delivery, KafkaConsumer, KafkaProducer, Record
from telestack.core.settings import KafkaSettings
from telestack.native.servers import free_port
from tests.polling import wait_until


def _produce(settings: KafkaSettings, topic: str, values: list[str]) -> list[Delivery]:
    deliveries: list[Delivery] = []
    producer = KafkaProducer(settings)
    for i, value in enumerate(values):
        producer.produce(topic, value, key=f"device-{i % 5}", on_delivery=deliveries.append)
    assert producer.close(30) == 0
    return deliveries


def _drain(consumer: KafkaConsumer, want: int, timeout_s: float = 30) -> list[Record]:
    got: list[Record] = []

    def more() -> bool:
        got.extend(consumer.consume(500, 0.5))
        return len(got) >= want

    wait_until(more, timeout_s, interval_s=0, what=f"{want} records consumed")
    return got


def test_every_record_is_confirmed_once_with_its_offset(kafka_settings: KafkaSettings, topic: str) -> None:
    deliveries = _produce(kafka_settings, topic, [f"m v={i}i" for i in range(300)])
    assert len(deliveries) == 300
    assert all(d.ok and d.topic == topic and d.offset >= 0 for d in deliveries)
    assert len({(d.partition, d.offset) for d in deliveries}) == 300


def test_restarted_consumer_resumes_after_last_marked_record(
    kafka_settings: KafkaSettings, topic: str, unique: str
) -> None:
    values = [f"m seq={i}i" for i in range(200)]
    _produce(kafka_settings, topic, values)
    group = f"g-{unique}"

    first = KafkaConsumer(kafka_settings, group, [topic])
    records = _drain(first, 200)
    by_partition: dict[int, list[Record]] = {}
    for rec in records:
        by_partition.setdefault(rec.partition, []).append(rec)
    # "Process" only the first half of each partition, then crash-free close (commit stored offsets).
    done = [rec for part in by_partition.values() for rec in part[: len(part) // 2]]
    first.mark_done(done)
    first.close()

    second = KafkaConsumer(kafka_settings, group, [topic])
    redelivered = _drain(second, 200 - len(done))
    second.close()
    done_values = {r.value for r in done}
    again_values = {r.value for r in redelivered}
    assert len(redelivered) == 200 - len(done)  # nothing processed twice past the commit
    assert done_values.isdisjoint(again_values)
    assert done_values | again_values == {v.encode() for v in values}  # nothing lost


def test_unmarked_records_are_redelivered_after_close(kafka_settings: KafkaSettings, topic: str, unique: str) -> None:
    _produce(kafka_settings, topic, [f"m v={i}i" for i in range(50)])
    first = KafkaConsumer(kafka_settings, f"g-{unique}", [topic])
    assert len(_drain(first, 50)) == 50
    first.close()  # nothing marked done: nothing committed
    second = KafkaConsumer(kafka_settings, f"g-{unique}", [topic])
    assert len(_drain(second, 50)) == 50
    second.close()


def test_revoked_partitions_are_reported_before_commit(kafka_settings: KafkaSettings, topic: str, unique: str) -> None:
    revoked: list[int] = []
    first = KafkaConsumer(
        kafka_settings,
        f"g-{unique}",
        [topic],
        on_revoke=lambda parts: revoked.extend(p.partition for p in parts),
    )
    wait_until(lambda: (first.consume(10, 0.2), first.assignment)[1], 30, interval_s=0, what="assignment")
    assert len(first.assignment) == 3
    second = KafkaConsumer(kafka_settings, f"g-{unique}", [topic])
    stop = threading.Event()
    worker = threading.Thread(target=lambda: [second.consume(10, 0.2) for _ in iter(stop.is_set, True)])
    worker.start()
    try:
        wait_until(lambda: (first.consume(10, 0.2), revoked)[1], 30, interval_s=0, what="a partition revoked")
    finally:
        stop.set()
        worker.join()
        second.close()
        first.close()
    assert set(revoked) <= {0, 1, 2}


def test_full_local_queue_waits_then_reports_undeliverable(unique: str) -> None:
    # Nothing listens on port 1: the queue fills and produce() gives up after block_s, keeping the record.
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", message_timeout_ms=1000)
    producer = KafkaProducer(settings, config={"queue.buffering.max.messages": 5})
    try:
        failed: list[Delivery] = []
        for i in range(5):
            producer.produce("t", f"m v={i}i", on_delivery=failed.append)
        with pytest.raises(DeliveryError, match="queue stayed full"):
            producer.produce("t", "m v=6i", block_s=0.3)
        assert producer.flush(5) == 0
        assert len(failed) == 5
        assert all(not d.ok for d in failed)
        # ci61: librdkafka queues an error event per refused reconnect and counts it in len(client); pending()
        # counts records only, so it stays 0 when events arrive after the flush.
        client = producer._producer
        wait_until(lambda: len(client) > 0, 30, what="an error event queued by librdkafka")
        assert producer.pending() == 0
    finally:
        producer.close(0)


def _librdkafka_threads() -> set[int]:
    """The ids of this process's librdkafka threads (each names itself rdk:...)."""
    tasks = Path("/proc/self/task")
    threads = set()
    for task in tasks.iterdir():
        with contextlib.suppress(OSError):  # a thread that ended while we looked
            if (task / "comm").read_text().startswith("rdk:"):
                threads.add(int(task.name))
    return threads


def test_close_releases_the_client_and_fails_what_was_left() -> None:
    """ci41: a producer that was only flushed kept its threads, reconnecting to a broker that was gone, until a
    garbage collection some time later (the client and its wrapper refer to each other through error_cb)."""
    before = _librdkafka_threads()
    producer = KafkaProducer(KafkaSettings(bootstrap_servers="127.0.0.1:1", message_timeout_ms=60_000))
    # This client's own threads, by id: other clients of this process (an earlier test's, still closing) may start
    # or end threads meanwhile, so a count of all of them proves nothing either way.
    mine = _librdkafka_threads() - before
    assert mine
    outcomes: list[Delivery] = []
    for i in range(3):
        producer.produce("t", f"m v={i}i", on_delivery=outcomes.append)
    assert producer.close(0.2) == 3  # nothing listens on port 1: none confirmed
    assert [d.ok for d in outcomes] == [False] * 3  # purged: each caller hears of its record
    wait_until(lambda: not mine & _librdkafka_threads(), 10, what="the client's threads ended")
    assert producer.pending() == 0
    with pytest.raises(KafkaError, match="closed"):
        producer.produce("t", "m v=9i")
    assert producer.close() == 0  # a second close does nothing


def test_a_consumer_left_without_any_broker_starts_a_new_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13, finding 1: librdkafka 2.16 may forget every broker after a frozen KRaft broker wakes up (librdkafka
    issue 5301) and never learn them again; the consumer then replaces its client. Here no broker ever answers."""
    import telestack.core.kafka as core_kafka

    monkeypatch.setattr(core_kafka, "REBUILD_AFTER_S", 1.0)
    monkeypatch.setattr(core_kafka, "REBUILD_PROBE_TIMEOUT_S", 0.5)  # nothing listens: the wait is all there is
    consumer = KafkaConsumer(KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"), "g", ["t"])
    try:
        wait_until(lambda: (consumer.consume(10, 0.2), consumer.rebuilds)[1] >= 2, 40, interval_s=0, what="rebuilds")
    finally:
        consumer.close(commit_timeout_s=1)

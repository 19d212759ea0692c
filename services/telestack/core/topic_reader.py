"""Reading a whole topic up to its end, as the end was when reading started (no consumer group, nothing committed).

What a restart or a tool reads before it is up to date: alerting its compacted state, the actuator the recent
commands, ``can-replay`` the raw archive. The end is taken once, at the start: the high watermark of every
partition. A partition is read to its end when the consumer's position (the next offset it would return) has
reached that watermark; that holds across gaps in the offsets (compaction, transaction markers), where waiting
for the record at ``high - 1`` or for a partition-EOF event does not.

`read_to_end` yields exactly the records that were in the topic at the start; `assign_from` and `CatchUp` are
its two halves, for a reader that keeps following the topic once caught up (the actuator).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import confluent_kafka
from confluent_kafka import KafkaException, TopicPartition

from telestack.core.errors import KafkaError, TopicNotFound
from telestack.core.kafka import Record
from telestack.core.settings import KafkaSettings

__all__ = ["CatchUp", "assign_from", "read_to_end", "reader_consumer"]


def reader_consumer(
    settings: KafkaSettings, purpose: str, *, error_cb: Callable[[confluent_kafka.KafkaError], None] | None = None
) -> confluent_kafka.Consumer:
    """A consumer for `assign` only: it joins no group and commits nothing (the group id is never used)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"{settings.client_id}-{purpose}",
        "group.id": f"telestack-{purpose}-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",  # the start was deleted meanwhile (retention): from what is left
        **settings.config,
    }
    if error_cb is not None:
        conf["error_cb"] = error_cb
    return confluent_kafka.Consumer(conf)


T = TypeVar("T")

# What a partition answers for a moment after its topic was created or its leader moved (ci45, on a loaded
# machine: "Failed to get watermark offsets: Broker: Not leader for partition" for a topic created just before).
_LEADER_SETTLING = {
    confluent_kafka.KafkaError.NOT_LEADER_FOR_PARTITION,
    confluent_kafka.KafkaError.LEADER_NOT_AVAILABLE,
}


def _settled(ask: Callable[[], T], deadline: float) -> T:
    """`ask()`, asked again every 0.2 s until `deadline` (monotonic) while the partition's leader settles."""
    while True:
        try:
            return ask()
        except KafkaException as exc:
            if exc.args[0].code() not in _LEADER_SETTLING or time.monotonic() >= deadline:
                raise
        time.sleep(0.2)


def assign_from(
    consumer: confluent_kafka.Consumer,
    topic: str,
    since_ms: int | None = None,
    timeout_s: float = 10,
    *,
    from_end: bool = False,
) -> dict[int, int]:
    """Assign every partition of `topic` from its beginning (or from the first record at or after `since_ms`, or
    with `from_end` from its end: only records written after the call are read); returns partition → high
    watermark now, for the partitions that have records to read.

    Raises `TopicNotFound`, or `KafkaException` when Kafka does not answer (a partition whose leader is settling,
    as for a moment after its topic was created, is asked again until `timeout_s`).
    """
    metadata = consumer.list_topics(topic, timeout=timeout_s)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise TopicNotFound(f"topic {topic} not found: {None if found is None else found.error}")
    partitions = sorted(found.partitions)
    deadline = time.monotonic() + timeout_s
    if from_end or since_ms is None:
        start_at = confluent_kafka.OFFSET_END if from_end else confluent_kafka.OFFSET_BEGINNING
        starts = [TopicPartition(topic, p, start_at) for p in partitions]
    else:
        asked = [TopicPartition(topic, p, since_ms) for p in partitions]
        starts = _settled(lambda: consumer.offsets_for_times(asked, timeout=timeout_s), deadline)
    ends: dict[int, int] = {}
    assignment = []
    for tp in starts:
        at = TopicPartition(topic, tp.partition)

        def watermarks(at: TopicPartition = at) -> tuple[int, int]:
            return consumer.get_watermark_offsets(at, timeout=timeout_s)

        low, high = _settled(watermarks, deadline)
        start = tp.offset
        if start == confluent_kafka.OFFSET_BEGINNING:
            start = low
        elif start < 0:
            start = high  # the end; or -1 from offsets_for_times: nothing that recent
        if start < high:
            ends[tp.partition] = high
        assignment.append(TopicPartition(topic, tp.partition, start))
    consumer.assign(assignment)
    return ends


class CatchUp:
    """Which assigned partitions are not yet read up to the end they had at the start."""

    def __init__(self, topic: str, ends: dict[int, int]) -> None:
        self.topic = topic
        self.ends = dict(ends)
        self.remaining = dict(ends)

    def done(self, consumer: confluent_kafka.Consumer) -> bool:
        """True once every partition's position has reached its end (asks the consumer, no broker round trip)."""
        if self.remaining:
            for tp in consumer.position([TopicPartition(self.topic, p) for p in self.remaining]):
                if tp.offset >= self.remaining[tp.partition]:
                    del self.remaining[tp.partition]
        return not self.remaining

    def before_end(self, partition: int, offset: int) -> bool:
        """Whether the record was in the topic at the start (a later one is past the end)."""
        return offset < self.ends.get(partition, 0)


def read_to_end(
    settings: KafkaSettings,
    topic: str,
    *,
    purpose: str,
    since_ms: int | None = None,
    stall_timeout_s: float = 30.0,
    batch: int = 500,
) -> Iterator[Record]:
    """Every record of `topic` (from `since_ms`, else its beginning) up to its end at the time of the call.

    Raises `TopicNotFound`; `KafkaError` when Kafka does not answer, or no record came for
    `stall_timeout_s` while some partition was still behind (the error names them and Kafka's last error).
    """
    errors: list[str] = []
    try:
        consumer = reader_consumer(settings, purpose, error_cb=lambda err: errors.append(str(err)))
    except KafkaException as exc:
        raise KafkaError(f"cannot read {topic}: {exc}") from exc
    try:
        catch_up = CatchUp(topic, assign_from(consumer, topic, since_ms, timeout_s=stall_timeout_s))
        last_progress = time.monotonic()
        while not catch_up.done(consumer):
            messages = consumer.consume(batch, 0.5)
            if messages:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > stall_timeout_s:
                behind = sorted(catch_up.remaining)
                last = f"; last error: {errors[-1]}" if errors else ""
                raise KafkaError(f"{topic}: no progress for {stall_timeout_s:.0f} s; partitions {behind} unread{last}")
            for message in messages:
                err = message.error()
                if err is not None:
                    if err.fatal():
                        raise KafkaError(f"reading {topic}: {err}")
                    errors.append(str(err))
                    continue
                record = Record.from_message(message)
                if catch_up.before_end(record.partition, record.offset):
                    yield record
    except KafkaException as exc:
        raise KafkaError(f"cannot read {topic}: {exc}") from exc
    finally:
        consumer.close()

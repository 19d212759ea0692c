"""The influx-writer loop: consume ``telemetry``, batch, hand batches to the `Flusher`, store offsets of
batches it reports done, in order.

Delivery: an offset is stored (then committed) only after InfluxDB accepted every line of the records
before it, or Kafka confirmed their dead letters. A crash, a ``kill -9`` or a revoked partition replays the
records not yet done; since each point carries its source timestamp, a replayed point overwrites itself in
InfluxDB instead of adding a row.

Back-pressure: at most ``max_in_flight`` batches wait for InfluxDB (``write_concurrency`` of them written at
once). Past that the consumer is paused (it keeps polling, so it stays in the group) and resumes once a batch
is done: memory stays bounded however long InfluxDB is down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from telestack.core.errors import TelestackError
from telestack.core.kafka import KafkaConsumer, TopicPartition
from telestack.core.runtime import Check, Logger, get_logger
from telestack.core.service import ServiceBase
from telestack.influx_writer.batcher import Batcher
from telestack.influx_writer.flusher import Flusher, FlushResult
from telestack.influx_writer.settings import WriterSettings

__all__ = ["CONSUMER_CONFIG", "StopSignal", "WriterService"]

# Bounded prefetch: with the batches in flight this caps the writer's memory while InfluxDB is down.
CONSUMER_CONFIG = {
    "queued.max.messages.kbytes": 16_384,
    "fetch.max.bytes": 16 * 1024 * 1024,
    "max.partition.fetch.bytes": 4 * 1024 * 1024,
}
POLL_MAX_S = 0.5  # longest wait in consume, so shutdown is noticed quickly
# In-flight batches full for longer than this means InfluxDB is slow or down: pause the consumer. Shorter
# waits are normal back-pressure, spent waiting for a write to finish (pausing would drop the prefetched
# records and cost a fetch round trip on resume). librdkafka heartbeats from its own thread meanwhile.
PAUSE_AFTER_S = 1.0


class StopSignal(Protocol):
    def is_set(self) -> bool: ...


class WriterService(ServiceBase):
    """One writer replica. `run` blocks until `stop` is set or a fatal error (raised) occurs.

    `closing`: what `close` releases after the run (the Kafka producer and InfluxDB client it was built with).
    Its metrics are its flusher's (``flusher.metrics``).
    """

    name = "influx-writer"

    def __init__(
        self,
        settings: WriterSettings,
        flusher: Flusher,
        *,
        log: Logger | None = None,
        closing: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.settings = settings
        self.options = settings.influx_writer
        self.flusher = flusher
        self.metrics = flusher.metrics
        self.log: Logger = log if log is not None else get_logger("influx-writer")
        self._closing = list(closing)
        self.batcher = Batcher(
            max_lines=self.options.batch_lines,
            max_bytes=self.options.batch_bytes,
            max_delay_s=self.options.batch_delay_ms / 1000,
        )
        self.consumer: KafkaConsumer | None = None
        self.paused = False
        self.full_since: float | None = None
        self.fatal: TelestackError | None = None

    def health(self) -> list[Check]:
        return [Check.of("influx", self.flusher.health.probe), Check.of("kafka", self.kafka_probe)]

    def _close(self) -> None:
        for close in self._closing:
            close()

    def kafka_probe(self) -> tuple[bool, str]:
        consumer = self.consumer
        if consumer is None:
            return False, "not started"
        detail = f"{len(consumer.assignment)} partitions assigned" + (", paused" if self.paused else "")
        if consumer.last_error:
            detail += f"; last error: {consumer.last_error}"
        return True, detail

    def run(self, stop: StopSignal) -> int:
        topic = self.settings.kafka.topics.telemetry
        consumer = KafkaConsumer(
            self.settings.kafka,
            self.options.group_id,
            [topic],
            config={**CONSUMER_CONFIG, **self.settings.kafka.config},
            on_revoke=self._on_revoke,
        )
        self.consumer = consumer
        self.log.info("consuming", topic=topic, group=self.options.group_id)
        try:
            while not stop.is_set() and self.fatal is None:
                self._step(consumer)
            if self.fatal is None:
                self._drain(consumer)
        finally:
            self.flusher.stop()
            self._collect(consumer)
            consumer.close()  # commits what was stored
            self.metrics.paused.set(0)
        if self.fatal is not None:
            raise self.fatal
        return 0

    def _step(self, consumer: KafkaConsumer) -> None:
        self._collect(consumer)
        if self.flusher.sizer is not None:  # smaller batches while InfluxDB is slow: offsets keep moving
            self.batcher.max_lines = self.flusher.sizer.lines
        if self.flusher.full():
            now = time.monotonic()
            self.full_since = self.full_since or now
            if not self.paused and now - self.full_since < PAUSE_AFTER_S:
                self._collect(consumer, 0.05)  # returns as soon as a batch is done
                return
            # Writes are backing up (InfluxDB slow or down). Keep polling so we stay in the group and
            # rebalance callbacks run; pause again each time, since newly assigned partitions start unpaused.
            consumer.pause()
            if not self.paused:
                self.paused = True
                self.metrics.paused.set(1)
                self.log.info("consumption_paused", in_flight=self.flusher.in_flight())
            self._add(consumer.consume(1_000, 0.1))
            return
        self.full_since = None
        if self.paused:
            consumer.resume()
            self.paused = False
            self.metrics.paused.set(0)
            self.log.info("consumption_resumed")
        now = time.monotonic()
        if self.batcher.ready(now):
            self.flusher.submit(self.batcher.take())
            return
        timeout = min(self.batcher.time_left(now), POLL_MAX_S)
        self._add(consumer.consume(self.batcher.room(), timeout))

    def _add(self, records: list[Any]) -> None:
        if records:
            self.metrics.records_consumed.inc(len(records))
            self.batcher.add(records, time.monotonic())

    def _collect(self, consumer: KafkaConsumer, timeout_s: float = 0) -> None:
        for result in self.flusher.results(timeout_s):
            self._handle(consumer, result)

    def _handle(self, consumer: KafkaConsumer, result: FlushResult) -> None:
        if result.error is not None:
            if self.fatal is None:
                self.fatal = result.error
                self.log.error("stopping_on_fatal_error", error=str(result.error))
            return
        if result.done:
            consumer.mark_done(result.batch.records)

    def _drain(self, consumer: KafkaConsumer) -> None:
        """On shutdown: write what is batched, wait (bounded) for in-flight writes, store their offsets."""
        batch = self.batcher.take()
        if batch.records:
            self.flusher.submit(batch)
        deadline = time.monotonic() + self.options.drain_timeout_ms / 1000
        while self.flusher.in_flight() and time.monotonic() < deadline:
            self._collect(consumer, 0.1)
        if self.flusher.in_flight():
            self.log.warning("drain_timeout", abandoned_batches=self.flusher.in_flight())

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Runs inside consume, before the core commits: finish what is in flight, drop what is not sent."""
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        dropped = self.batcher.drop_partitions(revoked)
        consumer = self.consumer
        deadline = time.monotonic() + self.options.revoke_wait_ms / 1000
        while consumer is not None and self.flusher.in_flight() and time.monotonic() < deadline:
            self._collect(consumer, 0.05)
        if consumer is not None:
            self._collect(consumer)
        self.log.info(
            "partitions_revoked",
            partitions=sorted(p for _, p in revoked),
            dropped_unsent_records=dropped,
            abandoned_batches=self.flusher.in_flight(),
        )

"""Kafka for an asyncio service: produce-and-await-confirmation, and a reader that replays the commands topic.

`AsyncProducer.send` returns once the broker confirmed the record (``acks=all``, idempotent producer from
`telestack.core.kafka`), or raises `Unavailable`: the HTTP layer answers only after Kafka has the data.
A thread serves the producer's delivery callbacks; each one resolves its future on the event loop.

`CommandLogReader` reads every partition of the commands topic from a point in time (the history window)
without a consumer group, so every replica sees every event; `caught_up` is set once it has read what the
topic held when it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import confluent_kafka
from confluent_kafka import KafkaException

from telestack.actuator.errors import Unavailable
from telestack.core.errors import KafkaError
from telestack.core.kafka import Delivery, Headers, KafkaProducer, Record
from telestack.core.runtime import get_logger
from telestack.core.settings import KafkaSettings
from telestack.core.topic_reader import CatchUp, assign_from, reader_consumer

__all__ = ["AsyncProducer", "CommandLogReader", "OutgoingRecord"]

log = get_logger("actuator")


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    topic: str
    value: str
    key: str
    headers: Headers = ()


def _resolve(future: asyncio.Future[Delivery], delivery: Delivery) -> None:
    if not future.done():
        future.set_result(delivery)


class AsyncProducer:
    def __init__(self, producer: KafkaProducer, timeout_s: float) -> None:
        self._producer = producer
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve_callbacks, name="actuator-kafka-poll", daemon=True)
        self.last_ok_at: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def start(self) -> None:
        self._thread.start()

    def _serve_callbacks(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def _queue(self, record: OutgoingRecord, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Delivery]:
        future: asyncio.Future[Delivery] = loop.create_future()

        def on_delivery(delivery: Delivery) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future, delivery)

        try:
            self._producer.produce(
                record.topic,
                record.value,
                key=record.key,
                headers=record.headers,
                on_delivery=on_delivery,
                block_s=0,
            )
        except KafkaError as exc:
            raise Unavailable(f"Kafka is not accepting records: {exc}") from exc
        return future

    def _noted(self, deliveries: Sequence[Delivery]) -> None:
        failed = [d for d in deliveries if not d.ok]
        if failed:
            self.last_error, self.last_error_at = failed[0].error, time.monotonic()
        else:
            self.last_ok_at = time.monotonic()

    async def send(self, record: OutgoingRecord) -> Delivery:
        """Produce one record and wait for the broker's confirmation; `Unavailable` if it did not come."""
        (delivery,) = await self.send_all([record], what="the record")
        return delivery

    async def send_all(self, records: Sequence[OutgoingRecord], *, what: str = "the records") -> list[Delivery]:
        """Produce every record, wait for all confirmations; `Unavailable` says how many were not confirmed."""
        loop = asyncio.get_running_loop()
        futures = [self._queue(record, loop) for record in records]
        done, pending = await asyncio.wait(futures, timeout=self.timeout_s)
        deliveries = [future.result() for future in futures if future in done]
        self._noted(deliveries)
        failed = [d for d in deliveries if not d.ok]
        if pending or failed:
            for future in pending:
                future.cancel()
            reason = failed[0].error if failed else f"no confirmation within {self.timeout_s:.0f} s"
            if pending and not failed:
                self.last_error, self.last_error_at = reason, time.monotonic()
            confirmed = len(deliveries) - len(failed)
            raise Unavailable(
                f"Kafka did not confirm {what} ({confirmed} of {len(records)} records confirmed): {reason}"
            )
        return deliveries

    def healthy(self) -> tuple[bool, str]:
        if self.last_error_at is not None and (self.last_ok_at is None or self.last_ok_at < self.last_error_at):
            return False, f"last record not confirmed: {self.last_error}"
        return True, f"{self._producer.pending()} records in flight"

    def close(self, timeout_s: float = 10) -> int:
        """Flush what is queued (outcomes of finished commands), then stop; returns records left unconfirmed."""
        self._stop.set()  # the callbacks' thread first: the producer's close serves the last ones itself
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        return self._producer.close(timeout_s)


class CommandLogReader:
    """Reads the commands topic from `since_ms` on, calling `on_record` (in its own thread) for each record."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        since_ms: int,
        on_record: Callable[[Record], None],
    ) -> None:
        self._settings = settings
        self.topic = topic
        self.since_ms = since_ms
        self._on_record = on_record
        self.caught_up = threading.Event()
        self.records_read = 0
        self.last_error: str | None = None
        self._reachable_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="actuator-commands-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def healthy(self) -> tuple[bool, str]:
        if not self.caught_up.is_set():
            return (
                False,
                f"replaying {self.topic} ({self.records_read} records so far; {self.last_error or 'no error'})",
            )
        if self._reachable_at is None or time.monotonic() - self._reachable_at > 30:
            return False, f"Kafka unreachable: {self.last_error or 'no metadata for 30 s'}"
        return True, f"{self.records_read} records read from {self.topic}"

    def _on_error(self, err: confluent_kafka.KafkaError) -> None:
        self.last_error = str(err)

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = reader_consumer(self._settings, "actuator-commands", error_cb=self._on_error)
                catch_up = CatchUp(self.topic, assign_from(consumer, self.topic, self.since_ms))
                self._reachable_at = time.monotonic()
                self._follow(consumer, catch_up)
            except (KafkaException, KafkaError) as exc:
                self.last_error = str(exc)
                log.warning("commands topic unreadable, retrying", topic=self.topic, error=str(exc))
                self._stop.wait(2.0)
            finally:
                if consumer is not None:
                    consumer.close()

    def _follow(self, consumer: confluent_kafka.Consumer, catch_up: CatchUp) -> None:
        last_probe = time.monotonic()
        while not self._stop.is_set():
            if not self.caught_up.is_set() and catch_up.done(consumer):
                self.caught_up.set()
            for msg in consumer.consume(num_messages=200, timeout=0.5):
                if msg.error() is not None:
                    self.last_error = str(msg.error())
                    continue
                self.records_read += 1
                try:
                    self._on_record(Record.from_message(msg))
                except Exception as exc:  # one bad record must not stop the reader
                    log.warning("commands record skipped", error=repr(exc), offset=msg.offset())
            if time.monotonic() - last_probe > 10:
                last_probe = time.monotonic()
                try:
                    consumer.list_topics(self.topic, timeout=5)
                    self._reachable_at = time.monotonic()
                except KafkaException as exc:  # the consumer reconnects by itself; health shows it meanwhile
                    self.last_error = str(exc)

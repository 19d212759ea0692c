"""Kafka producer and consumer with the delivery semantics every telestack service relies on.

Producer: idempotent, ``acks=all``, compressed. Each record may carry a callback that is called exactly once
with a `Delivery` saying whether the broker confirmed it; that is what a service acknowledges upstream (the
MQTT message, the spooled CAN frame). ``poll(0)`` runs on every produce, a full local queue waits for room
instead of failing, and `close` flushes.

Consumer: ``enable.auto.offset.store=false``: an offset is stored only when the caller says the records
before it are done (`mark_done`); stored offsets are committed in the background, on partition revoke and
on close. A crash therefore replays at most the records not yet done: at-least-once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import confluent_kafka
from confluent_kafka import KafkaException, Message, TopicPartition

from telestack.core.errors import DeliveryError, KafkaError
from telestack.core.settings import KafkaSettings

__all__ = [
    "Delivery",
    "DeliveryCallback",
    "Headers",
    "KafkaConsumer",
    "KafkaProducer",
    "Message",
    "Record",
    "TopicPartition",
    "admin_client",
    "ensure_topics",
]

Headers = Sequence[tuple[str, str | bytes]]


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the broker said about one produced record."""

    topic: str
    key: bytes | None
    partition: int
    offset: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


DeliveryCallback = Callable[[Delivery], None]


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed record, detached from librdkafka's Message so it can be kept in a batch."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None

    @classmethod
    def from_message(cls, msg: Message) -> Record:
        ts_type, ts = msg.timestamp()  # (timestamp type, ms since epoch)
        raw_headers = msg.headers() or []
        return cls(
            topic=msg.topic() or "",
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            key=msg.key(),
            value=msg.value() or b"",
            headers=tuple((k, v if isinstance(v, bytes) else b"") for k, v in raw_headers),  # type: ignore[str-unpack]
            timestamp_ms=ts if ts_type != confluent_kafka.TIMESTAMP_NOT_AVAILABLE else None,
        )

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return None


def _base_config(settings: KafkaSettings) -> dict[str, Any]:
    return {"bootstrap.servers": settings.bootstrap_servers, "client.id": settings.client_id}


def _encode(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return value.encode("utf-8")


class KafkaProducer:
    """Idempotent producer; see the module docstring for its guarantees."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        config: Mapping[str, Any] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        conf: dict[str, Any] = {
            **_base_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": settings.compression,
            "linger.ms": settings.linger_ms,
            "message.timeout.ms": settings.message_timeout_ms,
            "error_cb": self._on_client_error,
            **settings.config,
            **(config or {}),
        }
        self._on_error = on_error
        self.last_error: str | None = None
        try:
            self._producer = confluent_kafka.Producer(conf)
        except KafkaException as exc:
            raise KafkaError(f"cannot create Kafka producer: {exc}") from exc

    def _on_client_error(self, err: confluent_kafka.KafkaError) -> None:
        self.last_error = str(err)
        if err.fatal():
            self.last_error = f"fatal: {err}"
        if self._on_error is not None:
            self._on_error(self.last_error)

    def produce(
        self,
        topic: str,
        value: str | bytes,
        *,
        key: str | bytes | None = None,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
        on_delivery: DeliveryCallback | None = None,
        block_s: float | None = None,
    ) -> None:
        """Queue one record. If the local queue is full, serve callbacks until there is room.

        `block_s` bounds that wait (None: wait as long as it takes); past it, `DeliveryError` is raised and
        the record was not queued, so the caller still owns it.
        """
        kwargs: dict[str, Any] = {"key": _encode(key), "value": _encode(value)}
        if headers:
            kwargs["headers"] = [(k, _encode(v)) for k, v in headers]
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        if on_delivery is not None:
            kwargs["on_delivery"] = _delivery_adapter(on_delivery)
        deadline = None if block_s is None else time.monotonic() + block_s
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                break
            except BufferError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeliveryError(
                        f"local producer queue stayed full for {block_s:.1f} s (is Kafka reachable?)"
                    ) from None
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise KafkaError(f"cannot produce to {topic}: {exc}") from exc
        self._producer.poll(0)

    def poll(self, timeout_s: float = 0) -> int:
        """Serve delivery callbacks; returns how many were served."""
        return int(self._producer.poll(timeout_s))

    def pending(self) -> int:
        """Records queued locally or in flight, not yet confirmed."""
        return len(self._producer)

    def flush(self, timeout_s: float = 30) -> int:
        """Wait until every queued record is confirmed or failed; returns how many are still pending."""
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 30) -> int:
        """Flush on shutdown; returns the records still unconfirmed (their callbacks never fired)."""
        return self.flush(timeout_s)


def _or_minus_one(value: int | None) -> int:
    return -1 if value is None else value


def _delivery_adapter(callback: DeliveryCallback) -> Callable[[Any, Message], None]:
    def on_delivery(err: Any, msg: Message) -> None:
        callback(
            Delivery(
                topic=msg.topic() or "",
                key=msg.key(),
                partition=_or_minus_one(msg.partition()),
                offset=_or_minus_one(msg.offset()),
                error=None if err is None else str(err),
            )
        )

    return on_delivery


class KafkaConsumer:
    """Consumer-group member that stores offsets only for records the caller marked done."""

    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str,
        topics: Iterable[str],
        *,
        config: Mapping[str, Any] | None = None,
        on_revoke: Callable[[list[TopicPartition]], None] | None = None,
        on_assign: Callable[[list[TopicPartition]], None] | None = None,
    ) -> None:
        conf: dict[str, Any] = {
            **_base_config(settings),
            "group.id": group_id,
            "enable.auto.offset.store": False,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "error_cb": self._on_client_error,
            **settings.config,
            **(config or {}),
        }
        self._on_revoke = on_revoke
        self._on_assign = on_assign
        self.last_error: str | None = None
        self.assignment: set[tuple[str, int]] = set()
        try:
            self._consumer = confluent_kafka.Consumer(conf)
            self._consumer.subscribe(
                list(topics), on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
            )
        except KafkaException as exc:
            raise KafkaError(f"cannot create Kafka consumer for group {group_id}: {exc}") from exc

    def _on_client_error(self, err: confluent_kafka.KafkaError) -> None:
        self.last_error = str(err)

    def _assigned(self, consumer: confluent_kafka.Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment.update((tp.topic, tp.partition) for tp in partitions)
        if self._on_assign is not None:
            self._on_assign(partitions)

    def _revoked(self, consumer: confluent_kafka.Consumer, partitions: list[TopicPartition]) -> None:
        # Let the caller finish (mark done) or drop its in-flight batch, then commit what is stored.
        if self._on_revoke is not None:
            self._on_revoke(partitions)
        self.commit()
        self.assignment.difference_update((tp.topic, tp.partition) for tp in partitions)

    def _lost(self, consumer: confluent_kafka.Consumer, partitions: list[TopicPartition]) -> None:
        # Lost (session timed out, e.g. the coordinator was unreachable): others may own them now, so no commit;
        # a commit here would also wait on the unreachable coordinator and hold up rejoining the group.
        if self._on_revoke is not None:
            self._on_revoke(partitions)
        self.assignment.difference_update((tp.topic, tp.partition) for tp in partitions)

    def consume(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        """Up to `max_records` records, waiting at most `timeout_s` for the first ones."""
        try:
            messages = self._consumer.consume(num_messages=max_records, timeout=timeout_s)
        except KafkaException as exc:
            raise KafkaError(f"consume failed: {exc}") from exc
        records: list[Record] = []
        for msg in messages:
            err = msg.error()
            if err is None:
                records.append(Record.from_message(msg))
            elif err.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                continue
            elif err.fatal():
                raise KafkaError(f"fatal consumer error: {err}")
            else:
                self.last_error = str(err)
        return records

    def mark_done(self, records: Iterable[Record]) -> None:
        """Store offsets past `records` (the highest per partition); they are committed soon after."""
        highest: dict[tuple[str, int], int] = {}
        for rec in records:
            key = (rec.topic, rec.partition)
            if rec.offset >= highest.get(key, -1):
                highest[key] = rec.offset
        if not highest:
            return
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in highest.items() if (t, p) in self.assignment]
        if not offsets:
            return
        try:
            self._consumer.store_offsets(offsets=offsets)
        except KafkaException as exc:
            # The partition was revoked between consume and store: its records will be redelivered.
            self.last_error = f"store_offsets: {exc}"

    def commit(self) -> None:
        """Commit stored offsets now (synchronously); a no-op when nothing new is stored."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == confluent_kafka.KafkaError._NO_OFFSET:
                return
            self.last_error = f"commit: {exc}"

    def pause(self) -> None:
        """Stop fetching (while the sink is down) without leaving the group."""
        self._consumer.pause(self._consumer.assignment())

    def resume(self) -> None:
        self._consumer.resume(self._consumer.assignment())

    def lag(self) -> dict[tuple[str, int], int]:
        """Records between the committed offset and the high watermark, per assigned partition."""
        lag: dict[tuple[str, int], int] = {}
        assigned = self._consumer.assignment()
        if not assigned:
            return lag
        committed = self._consumer.committed(assigned, timeout=5)
        for tp in committed:
            low, high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            position = tp.offset if tp.offset >= 0 else low
            lag[(tp.topic, tp.partition)] = max(0, high - position)
        return lag

    def backlog_ends(self, partitions: Iterable[TopicPartition], timeout_s: float = 5) -> dict[int, int]:
        """Partition → offset of its last record now, for those of `partitions` (just assigned) whose committed
        offset is behind their end: what this member must read before it is up to date."""
        ends: dict[int, int] = {}
        for tp in self._consumer.committed(list(partitions), timeout=timeout_s):
            low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
            start = tp.offset if tp.offset >= 0 else low  # no committed offset: auto.offset.reset is earliest
            if high > start:
                ends[tp.partition] = high - 1
        return ends

    def close(self) -> None:
        """Commit stored offsets and leave the group."""
        try:
            self.commit()
        finally:
            self._consumer.close()


def admin_client(settings: KafkaSettings) -> confluent_kafka.admin.AdminClient:
    from confluent_kafka.admin import AdminClient

    return AdminClient({**_base_config(settings), **settings.config})


def ensure_topics(
    settings: KafkaSettings,
    topics: Mapping[str, int],
    *,
    replication_factor: int = 1,
    config: Mapping[str, Mapping[str, str]] | None = None,
    timeout_s: float = 30,
) -> list[str]:
    """Create the topics (name → partitions) that do not exist yet; returns the names created."""
    from confluent_kafka.admin import NewTopic

    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise KafkaError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from exc
    wanted = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=dict((config or {}).get(name, {})),
        )
        for name, partitions in topics.items()
        if name not in existing
    ]
    created: list[str] = []
    if not wanted:
        return created
    for name, future in admin.create_topics(wanted, operation_timeout=timeout_s).items():
        try:
            future.result(timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise KafkaError(f"cannot create topic {name}: {exc}") from exc
    return created

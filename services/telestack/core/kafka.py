"""Kafka producer and consumer with the delivery semantics every telestack service relies on.

Producer: idempotent, ``acks=all``, compressed. Each record may carry a callback that is called exactly once
with a `Delivery` saying whether the broker confirmed it; that is what a service acknowledges upstream (the
MQTT message, the spooled CAN frame). ``poll(0)`` runs on every produce, a full local queue waits for room
instead of failing, and `close` flushes.

Consumer: ``enable.auto.offset.store=false``: an offset is stored only when the caller says the records
before it are done (`mark_done`); stored offsets are committed about every second, on partition revoke and
on close. A crash therefore replays at most the records not yet done: at-least-once.

Commits are asynchronous and at most one is in flight. librdkafka's own auto-commit timer sends an
OffsetCommitRequest every interval whether or not the previous one was answered: while the broker is frozen
(a dropped link) they pile up on the coordinator connection, each waiting out ``socket.timeout.ms`` and its
retries, the heartbeats queue behind them, and after the session times out the group cannot rejoin until
every one of them has ended (librdkafka waits for outstanding commits before it finishes an unassign). A
synchronous commit in a rebalance callback would also block the consumer thread on the unreachable
coordinator. So auto-commit is off, the interval is kept here, and nothing here waits on the coordinator
except `close` (bounded).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import confluent_kafka
from confluent_kafka import KafkaException, Message, TopicPartition

from telestack.core.errors import DeliveryError, KafkaError, RecordRejected
from telestack.core.settings import KafkaSettings

__all__ = [
    "Delivery",
    "DeliveryCallback",
    "Headers",
    "KafkaConsumer",
    "KafkaProducer",
    "Message",
    "Producer",
    "Record",
    "RecordRejected",
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
    rejected: bool = False  # Kafka refused the record itself (too large, invalid): producing it again fails too

    @property
    def ok(self) -> bool:
        return self.error is None


DeliveryCallback = Callable[[Delivery], None]


class Producer(Protocol):
    """What a service needs of `KafkaProducer`: a fake with these methods stands in for it in unit tests."""

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
    ) -> None: ...

    def poll(self, timeout_s: float = 0) -> int: ...

    def flush(self, timeout_s: float = 30) -> int: ...


# Errors about the record itself, not the link: the same record fails the same way however often it is sent.
REJECTED_CODES = frozenset(
    {
        confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE,
        confluent_kafka.KafkaError.RECORD_LIST_TOO_LARGE,
        confluent_kafka.KafkaError.INVALID_RECORD,
        confluent_kafka.KafkaError.INVALID_MSG,
        confluent_kafka.KafkaError.INVALID_MSG_SIZE,
        confluent_kafka.KafkaError.INVALID_TIMESTAMP,
    }
)


def _rejected(err: Any) -> bool:
    return err is not None and err.code() in REJECTED_CODES


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


# librdkafka (>= 2.10) forgets every broker a Metadata response does not list. A single KRaft broker that was
# frozen past broker.session.timeout.ms is fenced when it wakes and answers Metadata without itself for a moment:
# the client is then left with no broker at all, and by default bootstraps again only after 5 minutes
# (metadata.recovery.rebootstrap.trigger.ms), all that time without a group coordinator or a partition leader.
REBOOTSTRAP_AFTER_MS = 10_000


def _base_config(settings: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.client_id,
        "metadata.recovery.rebootstrap.trigger.ms": REBOOTSTRAP_AFTER_MS,
    }


def _encode(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return value.encode("utf-8")


# The producer side of librdkafka issue 5301 (see below, at REBUILD_AFTER_S): a client that forgot every broker
# never delivers again, while a fresh client reaches the cluster. A producer whose records wait with no
# successful delivery for PRODUCER_STUCK_AFTER_S asks its own client for metadata and, if that fails, a fresh
# client: when only the fresh one answers, the stuck client is replaced. Its records are purged, so each one's
# delivery callback fires once, as a failure, and the caller sends it again (the bridge has not acked the MQTT
# message, the CAN gateway spools it): at-least-once, nothing lost. When no client answers, Kafka itself is
# away: nothing is replaced, and the next check comes later (doubling up to PRODUCER_CHECK_MAX_S).
PRODUCER_STUCK_AFTER_S = 60.0
PRODUCER_CHECK_MAX_S = 300.0
PRODUCER_PROBE_TIMEOUT_S = 5.0


class KafkaProducer:
    """Idempotent producer; see the module docstring for its guarantees.

    A client that stays stuck while the cluster answers others is replaced (see PRODUCER_STUCK_AFTER_S):
    `replacements` counts it. The check runs in `produce`, `poll` and `flush`, on the caller's thread, and may
    block it up to twice PRODUCER_PROBE_TIMEOUT_S once per check period while no record is delivered.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        config: Mapping[str, Any] | None = None,
        on_error: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
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
        self._conf = conf
        self._clock = clock
        self.replacements = 0
        self._retired: list[confluent_kafka.Producer] = []  # replaced clients, polled until their queue is empty
        self._last_delivered = clock()  # a successful delivery, or a moment with nothing waiting
        self._failed_since = False  # a delivery failed since the last success
        self._stuck_after_s = PRODUCER_STUCK_AFTER_S
        self._next_watch = 0.0
        # Records queued and not yet reported (a delivery callback, success or failure, reports one). Not
        # len(client): librdkafka counts its unserved error events there too, and against a dead broker those
        # grow by one per refused reconnect with no record queued. Produce and callbacks may run on two threads.
        self._unreported = 0
        self._count_lock = threading.Lock()
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

    def _on_delivery(self, err: Any, msg: Message) -> None:
        with self._count_lock:
            self._unreported -= 1
        if err is None:
            self._last_delivered = self._clock()
            self._failed_since = False
        else:
            self._failed_since = True

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
        poll: bool = True,
    ) -> None:
        """Queue one record. If the local queue is full, serve callbacks until there is room.

        `block_s` bounds that wait (None: wait as long as it takes); past it, `DeliveryError` is raised and
        the record was not queued, so the caller still owns it. `poll`: serve delivery callbacks after queuing
        (off for a caller whose loop polls anyway: the bridge, once per pass rather than once per record).
        """
        kwargs: dict[str, Any] = {"key": _encode(key), "value": _encode(value)}
        if headers:
            kwargs["headers"] = [(k, _encode(v)) for k, v in headers]
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        kwargs["on_delivery"] = _delivery_adapter(on_delivery, self._on_delivery)
        deadline = None if block_s is None else time.monotonic() + block_s
        while True:
            try:
                self._producer.produce(topic, **kwargs)
            except BufferError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeliveryError(
                        f"local producer queue stayed full for {block_s:.1f} s (is Kafka reachable?)"
                    ) from None
                self._producer.poll(0.05)
                self._watch()
            except KafkaException as exc:
                if exc.args and _rejected(exc.args[0]):
                    raise RecordRejected(f"Kafka refuses the record for {topic}: {exc}") from exc
                raise KafkaError(f"cannot produce to {topic}: {exc}") from exc
            else:
                with self._count_lock:
                    self._unreported += 1
                break
        if poll:
            self._producer.poll(0)
        self._watch()

    def poll(self, timeout_s: float = 0) -> int:
        """Serve delivery callbacks; returns how many were served."""
        served = int(self._producer.poll(timeout_s))
        self._watch()
        return served

    def pending(self) -> int:
        """Records queued locally or in flight whose delivery callback has not run yet."""
        return max(self._unreported, 0)  # a callback on another thread may run before produce counts its record

    def flush(self, timeout_s: float = 30) -> int:
        """Wait until every queued record is confirmed or failed; returns how many are still pending."""
        self._watch()
        self._producer.flush(timeout_s)
        for old in self._retired:
            old.flush(0)
        return self.pending()

    def close(self, timeout_s: float = 30) -> int:
        """Flush, then release the client; returns the records still unconfirmed after `timeout_s`.

        Those are purged: their callbacks fire here, as failures. The client's threads and connections end now,
        not at a garbage collection some time later (the client and this object refer to each other through
        `error_cb`): a closed producer no longer reconnects to a broker that is gone, nor logs that it cannot.
        A client is released when no thread is inside a call of it any more; calls after `close` raise
        `KafkaError`; a second `close` does nothing.
        """
        if self._producer is _CLOSED:
            return 0
        left = self.flush(timeout_s)
        clients = [self._producer, *self._retired]
        self._producer, self._retired = _CLOSED, []
        for client in clients:
            client.purge(in_queue=True, in_flight=True)
            client.flush(1)  # serves the purged records' callbacks
        with self._count_lock:
            self._unreported = 0  # what was left is `left`; a closed producer holds nothing
        return left

    # --- the stuck-client watch (librdkafka 5301) -----------------------------------------------------------

    def _watch(self) -> None:
        now = self._clock()
        if now < self._next_watch:
            return
        self._next_watch = now + 1.0
        if self._retired:
            for old in self._retired:
                old.poll(0)  # the purged records' failure callbacks
            self._retired = [old for old in self._retired if len(old)]
        if not self.pending() and not self._failed_since:
            self._last_delivered = now  # nothing waiting: not stuck
            return
        if now - self._last_delivered < self._stuck_after_s:
            return
        self._last_delivered = now  # the next verdict one period from now
        if self._answers(self._producer):
            return  # this client has brokers: Kafka is slow or a leader is missing, not a forgotten cluster
        probe = confluent_kafka.Producer(_base_config_of(self._conf))
        try:
            reachable = self._answers(probe)
        finally:
            probe.flush(0)
        if not reachable:
            self._stuck_after_s = min(self._stuck_after_s * 2, PRODUCER_CHECK_MAX_S)  # Kafka is away: wait longer
            self.last_error = "no Kafka broker answers"
            return
        self._replace()

    @staticmethod
    def _answers(client: confluent_kafka.Producer) -> bool:
        try:
            client.list_topics(timeout=PRODUCER_PROBE_TIMEOUT_S)
        except KafkaException:
            return False
        return True

    def _replace(self) -> None:
        old = self._producer
        self._producer = confluent_kafka.Producer(self._conf)
        self.replacements += 1
        self._stuck_after_s = PRODUCER_STUCK_AFTER_S
        self.last_error = "the Kafka client had lost the cluster while a new one reaches it: replaced"
        old.purge(in_queue=True, in_flight=True, blocking=False)
        old.poll(0)  # each purged record's callback fires now, as a failure: the caller sends it again
        self._retired.append(old)
        self._failed_since = False
        self._last_delivered = self._clock()


class _ClosedProducer:
    """Stands for the client of a closed `KafkaProducer`: nothing queued, every call refused."""

    def __len__(self) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # what introspection asks (doctest collection: __wrapped__) is simply absent
            raise AttributeError(name)
        raise KafkaError(f"the Kafka producer is closed (its {name} was called after close)")


_CLOSED = cast(confluent_kafka.Producer, _ClosedProducer())


def _base_config_of(conf: Mapping[str, Any]) -> dict[str, Any]:
    """A client configuration without its callbacks (for a throw-away probe client)."""
    return {k: v for k, v in conf.items() if not callable(v)}


def _or_minus_one(value: int | None) -> int:
    return -1 if value is None else value


def _delivery_adapter(
    callback: DeliveryCallback | None, observe: Callable[[Any, Message], None]
) -> Callable[[Any, Message], None]:
    def on_delivery(err: Any, msg: Message) -> None:
        observe(err, msg)
        if callback is None:
            return
        callback(
            Delivery(
                topic=msg.topic() or "",
                key=msg.key(),
                partition=_or_minus_one(msg.partition()),
                offset=_or_minus_one(msg.offset()),
                error=None if err is None else str(err),
                rejected=_rejected(err),
            )
        )

    return on_delivery


# librdkafka 2.16 forgets every broker when a Metadata response lists none but some topics (a lone KRaft broker,
# fenced by its controller for a moment after it was frozen, answers so), and then has no broker left to learn
# them again from: its group coordinator is gone for good (librdkafka issue 5301, open). A consumer with no
# partition for REBUILD_AFTER_S whose client cannot get metadata from any broker is replaced by a new client,
# which bootstraps again; its stored offsets are lost, so their records are read again (at-least-once).
REBUILD_AFTER_S = 30.0
REBUILD_MAX_S = 300.0
REBUILD_PROBE_TIMEOUT_S = 5.0  # how long a metadata request may wait for any broker before the client is replaced

# How often stored offsets are committed, s; and how long a commit may stay unanswered before another may be
# sent (librdkafka ends every request within socket.timeout.ms and its retries; this is a backstop), s.
COMMIT_INTERVAL_S = 1.0
COMMIT_STUCK_S = 180.0


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
            "enable.auto.commit": False,  # committed here, one commit in flight at most: see the module docstring
            "on_commit": self._committed,
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
        self.commits_failed = 0
        self._stored = False  # offsets stored since the last commit was sent
        self._commit_sent: float | None = None  # monotonic time of the commit in flight
        self._next_commit = 0.0
        self._conf = conf
        self._topics = list(topics)
        self.rebuilds = 0
        self._unassigned_since: float | None = None
        self._next_cluster_check = 0.0
        self._rebuild_after_s = REBUILD_AFTER_S
        try:
            self._consumer = self._subscribed_client()
        except KafkaException as exc:
            raise KafkaError(f"cannot create Kafka consumer for group {group_id}: {exc}") from exc

    def _subscribed_client(self) -> confluent_kafka.Consumer:
        consumer = confluent_kafka.Consumer(self._conf)
        consumer.subscribe(self._topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost)
        return consumer

    def _watch_cluster(self) -> None:
        """Start a new client when this one has had no partition and no broker for a while (see the constant)."""
        now = time.monotonic()
        if self.assignment:
            self._unassigned_since = None
            self._rebuild_after_s = REBUILD_AFTER_S
            return
        if self._unassigned_since is None:
            self._unassigned_since = now
        if now - self._unassigned_since < self._rebuild_after_s or now < self._next_cluster_check:
            return
        self._next_cluster_check = now + self._rebuild_after_s
        try:
            self._consumer.list_topics(timeout=REBUILD_PROBE_TIMEOUT_S)  # any broker at all answers this
            return
        except KafkaException as exc:
            self.last_error = f"no broker answers ({exc}); starting a new Kafka client"
        old, self._consumer = self._consumer, self._subscribed_client()
        self.rebuilds += 1
        self._unassigned_since = now
        self._rebuild_after_s = min(self._rebuild_after_s * 2, REBUILD_MAX_S)  # Kafka may just be down: back off
        self._stored, self._commit_sent = False, None  # the old client's stored offsets are replayed
        # Closing a client that has no broker may take a while: not on this thread.
        threading.Thread(target=_close_quietly, args=(old,), name="kafka-consumer-close", daemon=True).start()

    def _on_client_error(self, err: confluent_kafka.KafkaError) -> None:
        self.last_error = str(err)

    def _assigned(self, consumer: confluent_kafka.Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced client, closing on another thread
        self.assignment.update((tp.topic, tp.partition) for tp in partitions)
        if self._on_assign is not None:
            self._on_assign(partitions)

    def _revoked(self, consumer: confluent_kafka.Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced client, closing on another thread
        # Let the caller finish (mark done) or drop its in-flight batch, then commit what is stored, without
        # waiting: librdkafka finishes the unassign once the commit is answered (or timed out), while this
        # thread keeps polling. A synchronous commit here blocked on an unreachable coordinator.
        if self._on_revoke is not None:
            self._on_revoke(partitions)
        self._commit_async(force=True)
        self.assignment.difference_update((tp.topic, tp.partition) for tp in partitions)

    def _lost(self, consumer: confluent_kafka.Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced client, closing on another thread
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
        self._commit_async()
        self._watch_cluster()
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
            return
        self._stored = True
        self._commit_async()

    def _commit_async(self, *, force: bool = False) -> None:
        """Send a commit of the stored offsets if one is due and none is in flight (`force`: due now)."""
        now = time.monotonic()
        if not self._stored or (not force and now < self._next_commit):
            return
        if self._commit_sent is not None and now - self._commit_sent < COMMIT_STUCK_S:
            return  # answered through `_committed`, served by the next consume
        try:
            self._consumer.commit(asynchronous=True)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == confluent_kafka.KafkaError._NO_OFFSET:
                self._stored = False  # nothing new to commit
            else:
                self.last_error = f"commit: {exc}"
            return
        self._stored = False
        self._commit_sent = now
        self._next_commit = now + COMMIT_INTERVAL_S

    def _committed(self, err: confluent_kafka.KafkaError | None, partitions: list[TopicPartition]) -> None:
        self._commit_sent = None
        if err is not None and err.code() != confluent_kafka.KafkaError._NO_OFFSET:
            # Not committed (coordinator away, assignment lost...): the stored offsets are sent again with the
            # next commit while they are still ours; otherwise their records are replayed (at-least-once).
            self.commits_failed += 1
            self.last_error = f"commit: {err}"
            self._stored = True

    def commit(self, timeout_s: float = 10.0) -> bool:
        """Commit the stored offsets, waiting at most `timeout_s` for the answer; True once they are committed.

        For the end of consumption (`close`): it pauses the assigned partitions, so that serving the commit's
        answer fetches no record, and drops what was prefetched (not done, so not lost: redelivered).
        """
        with contextlib.suppress(KafkaException):
            self._consumer.pause(self._consumer.assignment())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._commit_sent is None:
                if not self._stored:
                    return True
                self._commit_async(force=True)
                if self._commit_sent is None:
                    return not self._stored  # nothing to commit after all (or the commit could not be sent)
            self._consumer.poll(0.05)  # serves the commit callback
        return False

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

    def close(self, commit_timeout_s: float = 10.0) -> None:
        """Commit stored offsets (waiting at most `commit_timeout_s`) and leave the group."""
        try:
            self.commit(commit_timeout_s)
        finally:
            self._consumer.close()


def _close_quietly(consumer: confluent_kafka.Consumer) -> None:
    with contextlib.suppress(KafkaException, RuntimeError):
        consumer.close()


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
    _wait_visible(admin, {t.topic: t.num_partitions for t in wanted}, timeout_s)
    return created


def _wait_visible(admin: Any, topics: Mapping[str, int], timeout_s: float) -> None:
    """Until the broker's metadata shows each topic with its partitions: the controller confirms a creation before
    every broker applies it, and a reader asking meanwhile is told the topic does not exist."""
    deadline = time.monotonic() + timeout_s
    missing = dict(topics)
    while missing:
        try:
            metadata = admin.list_topics(timeout=max(0.1, deadline - time.monotonic())).topics
        except KafkaException:
            metadata = {}
        missing = {
            name: partitions
            for name, partitions in missing.items()
            if name not in metadata or metadata[name].error is not None or len(metadata[name].partitions) < partitions
        }
        if not missing:
            return
        if time.monotonic() > deadline:
            raise KafkaError(
                f"topics created but not visible in the brokers' metadata after {timeout_s:.0f} s: "
                f"{', '.join(sorted(missing))}"
            )
        time.sleep(0.05)

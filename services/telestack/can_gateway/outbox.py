"""Store-and-forward to Kafka: records go straight to the producer while Kafka answers, to the disk spool
while it does not, and come back out of the spool in order once it answers again.

States and rules (all in the gateway's thread; delivery callbacks run inside ``poll``):

- **link up**: a record is produced at once and kept in memory until Kafka confirms it.
- Kafka is declared **unreachable** when a delivery fails, when the oldest unconfirmed record waited longer
  than `stall_timeout_s` and nothing was confirmed for as long, when the producer's queue is full, or when
  more than `max_in_flight_bytes` wait. From then on new records go to the spool; nothing new is handed to
  the producer, so the records already in its queue cannot be overtaken.
- While unreachable, once every record handed to the producer has been resolved (confirmed, or failed after
  ``message.timeout.ms``), the oldest undelivered record is sent again every `retry_interval_s` as a probe.
- The first confirmation marks the link **up** again: failed records are sent again first, then the spool
  drains oldest first, and only when it is empty do new records go straight to Kafka again.

Per key (one partition) the order is therefore kept across outages; a record confirmed by the broker but whose
confirmation was lost can be sent twice (at-least-once), which InfluxDB absorbs (same series and timestamp).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from telestack.can_gateway.spool import DiskSpool, OutRecord
from telestack.core.errors import DeliveryError
from telestack.core.kafka import Delivery, Producer
from telestack.core.runtime import Logger, get_logger

__all__ = ["Outbox", "OutboxStats"]


@dataclass(slots=True)
class _Pending:
    record: OutRecord
    sent_at: float
    failed: bool = False


@dataclass(slots=True)
class OutboxStats:
    delivered_records: int = 0
    delivered_frames: int = 0
    failed_deliveries: int = 0
    spooled_records: int = 0
    spooled_frames: int = 0
    outages: int = 0


class Outbox:
    def __init__(
        self,
        producer: Producer,
        spool: DiskSpool,
        *,
        stall_timeout_s: float = 10.0,
        retry_interval_s: float = 2.0,
        max_in_flight_bytes: int = 32 * 1024 * 1024,
        log: Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_delivered: Callable[[OutRecord], None] | None = None,
    ) -> None:
        self.producer = producer
        self.spool = spool
        self.stall_timeout_s = stall_timeout_s
        self.retry_interval_s = retry_interval_s
        self.max_in_flight_bytes = max_in_flight_bytes
        self.log: Logger = log if log is not None else get_logger("can-gateway")
        self.clock = clock
        self.on_delivered = on_delivered
        self.stats = OutboxStats()
        self.link_up = True
        self._pending: dict[int, _Pending] = {}  # submission order
        self._in_flight_bytes = 0
        self._seq = 0
        self._next_probe = 0.0
        self._down_since: float | None = None
        self._last_progress = clock()  # last confirmation (or recovery): a stall is measured from there

    # --- state ---
    @property
    def unconfirmed(self) -> int:
        """Records handed to Kafka (or failed there) and not yet confirmed."""
        return len(self._pending)

    def idle(self) -> bool:
        """Nothing waits: every record submitted so far is confirmed."""
        return not self._pending and len(self.spool) == 0

    # --- flow ---
    def submit(self, record: OutRecord) -> None:
        self._seq += 1
        record.seq = self._seq
        if self.link_up and len(self.spool) == 0 and self._in_flight_bytes + record.size <= self.max_in_flight_bytes:
            self._send(record)
        else:
            self._to_spool(record)

    def pump(self) -> None:
        """Serve delivery callbacks, notice outages and recoveries, drain the spool. Call it every pass."""
        self.producer.poll(0)
        now = self.clock()
        if self.link_up:
            oldest = next(iter(self._pending.values()), None)
            waited = now - oldest.sent_at if oldest is not None and not oldest.failed else 0.0
            if waited > self.stall_timeout_s and now - self._last_progress > self.stall_timeout_s:
                self._link_down(f"a record waited {waited:.1f} s for Kafka's confirmation")
        if not self.link_up:
            self._probe(now)
            return
        self._resend_failed(now)
        while len(self.spool) and self._in_flight_bytes < self.max_in_flight_bytes:
            record = self._from_spool()
            if record is None:
                break
            if not self._send(record):
                break

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush what Kafka can take within `timeout_s`; spool the rest (it is sent first next time).

        Returns the number of records left in the spool.
        """
        deadline = self.clock() + timeout_s
        while self.clock() < deadline and not self.idle():
            self.pump()
            if self.link_up and not self.idle():
                self.producer.flush(min(0.5, max(0.0, deadline - self.clock())))
            elif not self.link_up:
                time.sleep(0.05)
        self.producer.poll(0)
        leftovers = [p.record for p in self._pending.values() if p.record.segment is None]
        self.spool.push_front(leftovers)
        self._pending.clear()
        left = len(self.spool)
        self.spool.flush()
        return left

    # --- internals ---
    def _produce(self, record: OutRecord) -> bool:
        seq = record.seq
        try:
            self.producer.produce(
                record.topic,
                record.value,
                key=record.key,
                headers=record.headers,
                on_delivery=lambda delivery: self._on_delivery(seq, delivery),
                block_s=0,
            )
        except DeliveryError as exc:  # the producer's own queue is full: Kafka is not keeping up
            self._link_down(str(exc))
            return False
        return True

    def _send(self, record: OutRecord) -> bool:
        """Hand a new record to the producer and track it (as failed if the producer refused it).

        Tracked before producing: the producer serves callbacks inside ``produce``, and a record that fails
        at once must find its entry, or it would wait forever for a callback already spent.
        """
        pending = self._pending[record.seq] = _Pending(record, self.clock())
        self._in_flight_bytes += record.size
        if not self._produce(record):
            pending.failed = True
            return False
        return True

    def _from_spool(self) -> OutRecord | None:
        """The oldest spooled record, numbered after everything pending (it was spooled after them)."""
        record = self.spool.pop_front()
        if record is not None:
            self._seq += 1
            record.seq = self._seq
        return record

    def _to_spool(self, record: OutRecord) -> None:
        if self.spool.append(record):
            self.stats.spooled_records += 1
            self.stats.spooled_frames += record.frames

    def _on_delivery(self, seq: int, delivery: Delivery) -> None:
        pending = self._pending.get(seq)
        if pending is None:
            return
        if delivery.ok:
            self._last_progress = self.clock()
            del self._pending[seq]
            self._in_flight_bytes -= pending.record.size
            self.stats.delivered_records += 1
            self.stats.delivered_frames += pending.record.frames
            if pending.record.segment is not None:
                self.spool.confirm(pending.record)
            if self.on_delivered is not None:
                self.on_delivered(pending.record)
            if not self.link_up:
                self._link_restored()
        else:
            pending.failed = True
            self.stats.failed_deliveries += 1
            self._link_down(f"delivery failed: {delivery.error}")

    def _link_down(self, reason: str) -> None:
        if not self.link_up:
            return
        self.link_up = False
        self.stats.outages += 1
        self._down_since = self.clock()
        self._next_probe = self.clock() + self.retry_interval_s
        self.log.warning("Kafka unreachable: spooling to disk", reason=reason, spool=str(self.spool.directory))

    def _link_restored(self) -> None:
        self.link_up = True
        down_for = self.clock() - (self._down_since or self.clock())
        self.log.info(
            "Kafka reachable again: draining the spool",
            down_s=round(down_for, 1),
            spooled_records=len(self.spool),
            unconfirmed=len(self._pending),
        )

    def _probe(self, now: float) -> None:
        if any(not p.failed for p in self._pending.values()):
            return  # the producer still retries those itself; wait for their outcome
        if now < self._next_probe:
            return
        self._next_probe = now + self.retry_interval_s
        first = next(iter(self._pending.values()), None)
        if first is not None:
            self._retry(first, now)
            return
        record = self._from_spool()
        if record is not None:
            self._send(record)

    def _resend_failed(self, now: float) -> None:
        for pending in list(self._pending.values()):
            if pending.failed and self.link_up:
                self._retry(pending, now)

    def _retry(self, pending: _Pending, now: float) -> None:
        pending.sent_at = now
        pending.failed = False
        if not self._produce(pending.record):
            pending.failed = True

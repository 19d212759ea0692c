"""Store-and-forward rules with a scripted producer (pure unit tests: the Kafka outage test is elsewhere)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from telestack.can_gateway.outbox import Outbox
from telestack.can_gateway.spool import DiskSpool, OutRecord
from telestack.core.errors import DeliveryError
from telestack.core.kafka import Delivery


class FakeProducer:
    """Holds produced records; the test decides when the 'broker' confirms or fails them."""

    def __init__(self) -> None:
        self.queue: list[tuple[bytes, Callable[[Delivery], None]]] = []
        self.delivered: list[int] = []
        self.up = True
        self.full = False
        self.fail_at_once = False

    def produce(self, topic: str, value: bytes, *, on_delivery: Any = None, **kw: Any) -> None:
        if self.full:
            raise DeliveryError("local producer queue stayed full")
        if self.fail_at_once:  # librdkafka may serve a local failure inside produce()
            on_delivery(Delivery("t", None, -1, -1, "Local: Unknown partition"))
            return
        self.queue.append((value, on_delivery))

    def broker_step(self) -> None:
        """Resolve everything queued: confirm if up, fail (timed out) if down."""
        queue, self.queue = self.queue, []
        for value, callback in queue:
            if self.up:
                self.delivered.append(int(value))
            callback(Delivery("t", None, 0, 0 if self.up else -1, None if self.up else "Local: Message timed out"))

    def poll(self, timeout_s: float = 0) -> int:
        return 0

    def flush(self, timeout_s: float = 30) -> int:
        self.broker_step()
        return 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(i: int) -> OutRecord:
    return OutRecord("t", b"k", str(i).encode(), [], 1, float(i))


def _outbox(tmp_path: Path) -> tuple[Outbox, FakeProducer, Clock]:
    producer, clock = FakeProducer(), Clock()
    spool = DiskSpool(tmp_path, max_bytes=10_000_000, segment_bytes=65_536)
    outbox = Outbox(producer, spool, stall_timeout_s=5, retry_interval_s=1, clock=clock)  # type: ignore[arg-type]
    return outbox, producer, clock


def test_records_go_straight_to_kafka_while_it_answers(tmp_path: Path) -> None:
    outbox, producer, _ = _outbox(tmp_path)
    for i in range(100):
        outbox.submit(_record(i))
    producer.broker_step()
    outbox.pump()
    assert producer.delivered == list(range(100)) and outbox.idle() and outbox.stats.spooled_records == 0


def test_a_stall_spools_new_records_and_everything_arrives_in_order(tmp_path: Path) -> None:
    outbox, producer, clock = _outbox(tmp_path)
    for i in range(10):
        outbox.submit(_record(i))
    producer.up = False  # the 4G link drops: nothing is confirmed
    clock.now = 6
    outbox.pump()
    assert not outbox.link_up
    for i in range(10, 50):
        outbox.submit(_record(i))
    assert outbox.stats.spooled_records == 40 and len(producer.queue) == 10
    producer.up = True  # link back before the producer gave up: it delivers its own queue
    producer.broker_step()
    for _ in range(3):
        clock.now += 1
        outbox.pump()
        producer.broker_step()
    outbox.pump()
    assert outbox.link_up and outbox.idle()
    assert producer.delivered == list(range(50))
    assert not list(tmp_path.glob("*.spool"))  # every spooled record confirmed: its segment is gone


def test_failed_records_are_sent_again_before_the_spool(tmp_path: Path) -> None:
    outbox, producer, clock = _outbox(tmp_path)
    for i in range(5):
        outbox.submit(_record(i))
    producer.up = False
    producer.broker_step()  # all five time out
    outbox.pump()
    assert not outbox.link_up and outbox.stats.failed_deliveries == 5
    for i in range(5, 20):
        outbox.submit(_record(i))
        clock.now += 0.5
        outbox.pump()  # probes (re-sends record 0) every retry interval
        producer.broker_step()
    assert producer.delivered == []
    producer.up = True
    for _ in range(6):
        clock.now += 1
        outbox.pump()
        producer.broker_step()
    assert producer.delivered == list(range(20)) and outbox.idle()
    assert outbox.unconfirmed == 0 and not list(tmp_path.glob("*.spool"))


def test_a_full_producer_queue_counts_as_unreachable(tmp_path: Path) -> None:
    outbox, producer, clock = _outbox(tmp_path)
    producer.full = True
    outbox.submit(_record(0))
    outbox.submit(_record(1))
    assert not outbox.link_up and outbox.stats.spooled_records == 1
    producer.full = False
    for _ in range(4):
        clock.now += 1
        outbox.pump()
        producer.broker_step()
    assert producer.delivered == [0, 1]


def test_close_spools_what_kafka_did_not_confirm(tmp_path: Path) -> None:
    outbox, producer, _ = _outbox(tmp_path)
    for i in range(3):
        outbox.submit(_record(i))
    producer.up = False
    producer.broker_step()
    outbox.submit(_record(3))
    clock_ticks = iter(range(100))
    outbox.clock = lambda: float(next(clock_ticks))
    assert outbox.close(timeout_s=3) == 4
    spool = DiskSpool(tmp_path, max_bytes=10_000_000, segment_bytes=65_536)
    values = []
    while (record := spool.pop_front()) is not None:
        values.append(int(record.value))
    assert values == [0, 1, 2, 3]


def test_a_record_failing_inside_produce_is_not_lost(tmp_path: Path) -> None:
    outbox, producer, clock = _outbox(tmp_path)
    producer.fail_at_once = True
    outbox.submit(_record(0))
    assert not outbox.link_up and outbox.unconfirmed == 1
    outbox.submit(_record(1))
    producer.fail_at_once = False
    for _ in range(4):
        clock.now += 1
        outbox.pump()
        producer.broker_step()
    assert producer.delivered == [0, 1] and outbox.idle()

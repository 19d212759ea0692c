"""Batching by lines, bytes and age; dropping revoked partitions."""

from __future__ import annotations

from telestack.core.kafka import Record
from telestack.influx_writer.batcher import Batcher, count_lines


def _rec(offset: int, value: bytes, partition: int = 0) -> Record:
    return Record("telemetry", partition, offset, b"dev", value, (), 1_700_000_000_000)


def test_batch_is_ready_at_the_line_limit_counting_lines_inside_records() -> None:
    batcher = Batcher(max_lines=5, max_bytes=1 << 20, max_delay_s=10)
    batcher.add([_rec(0, b"m v=1\nm v=2\nm v=3")], now=0.0)
    assert not batcher.ready(now=0.0)
    assert batcher.room() == 2
    batcher.add([_rec(1, b"m v=4\nm v=5\n")], now=0.0)
    assert batcher.ready(now=0.0)
    batch = batcher.take()
    assert batch.lines == 5
    assert batch.body() == b"m v=1\nm v=2\nm v=3\nm v=4\nm v=5"
    assert len(batcher.take()) == 0


def test_batch_is_ready_when_its_first_record_is_old_enough() -> None:
    batcher = Batcher(max_lines=1000, max_bytes=1 << 20, max_delay_s=0.2)
    assert batcher.time_left(now=5.0) == 0.2
    batcher.add([_rec(0, b"m v=1")], now=5.0)
    batcher.add([_rec(1, b"m v=2")], now=5.15)
    assert not batcher.ready(now=5.19)
    assert abs(batcher.time_left(now=5.1) - 0.1) < 1e-9
    assert batcher.ready(now=5.2)


def test_batch_is_ready_at_the_byte_limit() -> None:
    batcher = Batcher(max_lines=1000, max_bytes=100, max_delay_s=10)
    batcher.add([_rec(i, b"m v=1234567890") for i in range(6)], now=0.0)
    assert not batcher.ready(now=0.0)
    batcher.add([_rec(6, b"m v=1234567890")], now=0.0)
    assert batcher.ready(now=0.0)


def test_empty_batch_is_never_ready() -> None:
    batcher = Batcher(max_lines=1, max_bytes=1, max_delay_s=0)
    assert not batcher.ready(now=1e9)


def test_revoked_partitions_are_dropped_from_the_open_batch() -> None:
    batcher = Batcher(max_lines=1000, max_bytes=1 << 20, max_delay_s=10)
    batcher.add([_rec(i, b"m v=1\nm v=2", partition=i % 3) for i in range(9)], now=0.0)
    assert batcher.drop_partitions({("telemetry", 1), ("other", 0)}) == 3
    batch = batcher.take()
    assert {r.partition for r in batch.records} == {0, 2}
    assert batch.lines == 12
    assert batcher.drop_partitions({("telemetry", 0)}) == 0


def test_count_lines() -> None:
    assert count_lines(b"a v=1") == 1
    assert count_lines(b"a v=1\n") == 1
    assert count_lines(b"a v=1\nb v=2") == 2
    assert count_lines(b"") == 0

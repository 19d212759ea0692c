"""Grouping consumed records into write batches, by line count, by size and by age.

Pure: the caller passes the clock (`now`, monotonic seconds), so tests drive time by hand.

>>> from telestack.core.kafka import Record
>>> rec = lambda off, value: Record("telemetry", 0, off, None, value, (), None)
>>> batcher = Batcher(max_lines=3, max_bytes=1_000, max_delay_s=0.2)
>>> batcher.add([rec(0, b"m v=1"), rec(1, b"m v=2\\nm v=3")], now=10.0)
>>> batcher.ready(now=10.0)
True
>>> batch = batcher.take()
>>> batch.lines, batch.body()
(3, b'm v=1\\nm v=2\\nm v=3')
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from telestack.core.kafka import Record

__all__ = ["Batch", "Batcher", "count_lines"]


def count_lines(value: bytes) -> int:
    """Lines of line protocol in a record value (a trailing newline does not start a line).

    >>> count_lines(b"a v=1"), count_lines(b"a v=1\\nb v=2\\n"), count_lines(b"")
    (1, 2, 0)
    """
    if not value:
        return 0
    return value.count(b"\n") + (0 if value.endswith(b"\n") else 1)


@dataclass(slots=True)
class Batch:
    """Records written to InfluxDB together; their offsets are stored only after the write succeeded."""

    records: list[Record] = field(default_factory=list)
    lines: int = 0
    nbytes: int = 0
    started_at: float | None = None  # monotonic time of the first record

    def add(self, record: Record, now: float) -> None:
        if self.started_at is None:
            self.started_at = now
        self.records.append(record)
        self.lines += count_lines(record.value)
        self.nbytes += len(record.value) + 1

    def body(self) -> bytes:
        """The line protocol of every record, one request body."""
        return b"\n".join(rec.value.rstrip(b"\n") for rec in self.records)

    def without_partitions(self, partitions: Collection[tuple[str, int]]) -> Batch:
        """A copy keeping only records of other partitions (used when partitions are revoked)."""
        kept = Batch(started_at=self.started_at)
        for rec in self.records:
            if (rec.topic, rec.partition) not in partitions:
                kept.records.append(rec)
                kept.lines += count_lines(rec.value)
                kept.nbytes += len(rec.value) + 1
        if not kept.records:
            kept.started_at = None
        return kept

    def __len__(self) -> int:
        return len(self.records)


class Batcher:
    """Accumulates records; `ready` says when the current batch should be written."""

    def __init__(self, *, max_lines: int, max_bytes: int, max_delay_s: float) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.max_delay_s = max_delay_s
        self.current = Batch()

    def add(self, records: Iterable[Record], now: float) -> None:
        for rec in records:
            self.current.add(rec, now)

    def ready(self, now: float) -> bool:
        batch = self.current
        if not batch.records:
            return False
        return (
            batch.lines >= self.max_lines
            or batch.nbytes >= self.max_bytes
            or (batch.started_at is not None and now - batch.started_at >= self.max_delay_s)
        )

    def time_left(self, now: float) -> float:
        """Seconds until the current batch is due by age (`max_delay_s` when empty)."""
        if self.current.started_at is None:
            return self.max_delay_s
        return max(0.0, self.current.started_at + self.max_delay_s - now)

    def room(self) -> int:
        """Records to ask for next: at least one, at most what fills the batch by line count."""
        return max(1, self.max_lines - self.current.lines)

    def take(self) -> Batch:
        batch, self.current = self.current, Batch()
        return batch

    def drop_partitions(self, partitions: Collection[tuple[str, int]]) -> int:
        """Forget records of revoked partitions (their new owner reads them again); returns how many."""
        before = len(self.current)
        self.current = self.current.without_partitions(partitions)
        return before - len(self.current)

"""A bounded first-in first-out queue of Kafka records on local disk: the store of store-and-forward.

Records are appended to segment files (``<id>.spool``, ids in order); the oldest segment is read back into
memory when the outbox drains, and a segment file is deleted only once every record in it has been confirmed
by Kafka, so a crash while draining sends those records again (at-least-once) instead of losing them.

Entry layout, little-endian: ``uint32 payload length, uint32 crc32(payload), float64 created (s since the
epoch), uint32 frames, float64 first frame time`` then the payload (topic, key, headers, value), deflated
(zlib level 1: line protocol shrinks ~14x, raw frames ~5x, for ~0.5 µs of CPU per frame, paid only while
spooling; a 1 GB spool then holds ~30 min of three saturated 1 Mbit/s buses). A torn entry at the end of a
segment (power cut while writing) is detected by its length or CRC and dropped with a log line.

When an append would pass `max_bytes`, `on_full` decides: ``drop_oldest`` deletes the oldest segments (a
ring buffer: the newest data survives), ``drop_newest`` refuses new records until the spool drains. Either
way a warning names how many records and frames went and from when, and `dropped_frames` counts them.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from telestack.can_gateway.errors import SpoolError
from telestack.core.runtime import Logger, get_logger

__all__ = ["DiskSpool", "OutRecord"]

_ENTRY = struct.Struct("<IIdId")
_SUFFIX = ".spool"
_FIRST_ID = 10**12  # leaves room below for segments pushed in front of the head


@dataclass(slots=True)
class OutRecord:
    """A record on its way to Kafka, with what the spool and the metrics need to know about it."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    frames: int  # CAN frames it carries
    first_ts: float  # time of its first frame, s since the epoch
    created: float = field(default_factory=time.time)  # when the gateway made it, s since the epoch
    seq: int = 0  # submission order, set by the outbox
    segment: int | None = None  # spool segment it was read from, until confirmed

    @property
    def size(self) -> int:
        return len(self.value) + (len(self.key) if self.key else 0) + 64


def _encode_payload(record: OutRecord) -> bytes:
    topic = record.topic.encode()
    parts = [struct.pack("<H", len(topic)), topic]
    if record.key is None:
        parts.append(struct.pack("<i", -1))
    else:
        parts += [struct.pack("<i", len(record.key)), record.key]
    parts.append(struct.pack("<H", len(record.headers)))
    for name, value in record.headers:
        encoded = name.encode()
        parts += [struct.pack("<H", len(encoded)), encoded, struct.pack("<I", len(value)), value]
    parts += [struct.pack("<I", len(record.value)), record.value]
    return b"".join(parts)


def _decode_payload(payload: bytes, created: float, frames: int, first_ts: float, segment: int) -> OutRecord:
    pos = 0

    def take(fmt: str) -> Any:
        nonlocal pos
        (value,) = struct.unpack_from(fmt, payload, pos)
        pos += struct.calcsize(fmt)
        return value

    def raw(length: int) -> bytes:
        nonlocal pos
        chunk = payload[pos : pos + length]
        pos += length
        return chunk

    topic = raw(take("<H")).decode()
    key_length = take("<i")
    key = None if key_length < 0 else raw(key_length)
    headers = []
    for _ in range(take("<H")):
        name = raw(take("<H")).decode()
        headers.append((name, raw(take("<I"))))
    value = raw(take("<I"))
    return OutRecord(topic, key, value, headers, frames, first_ts, created, 0, segment)


@dataclass(slots=True)
class _Segment:
    id: int
    path: Path
    records: int = 0
    frames: int = 0
    bytes: int = 0
    first_created: float | None = None
    first_ts: float | None = None
    last_ts: float | None = None
    popped: int = 0  # records handed to the outbox
    unconfirmed: int = 0  # of those, not yet confirmed


class DiskSpool:
    """The on-disk FIFO; single-threaded (the gateway loop owns it)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int,
        on_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest",
        log: Logger | None = None,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = min(segment_bytes, max_bytes)
        self.on_full = on_full
        self.log: Logger = log if log is not None else get_logger("can-gateway")
        self.dropped_records = 0
        self.dropped_frames = 0
        self._segments: deque[_Segment] = deque()
        self._head: deque[OutRecord] = deque()  # records of the head segment read into memory
        self._head_id: int | None = None
        self._tail_file: Any = None
        self._refusing = False
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create spool directory {directory}: {exc}") from exc
        self._recover()

    # --- state ---
    def __len__(self) -> int:
        """Records waiting (not yet handed back to the outbox)."""
        return sum(s.records - s.popped for s in self._segments)

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self._segments if s.popped == 0) + sum(r.frames for r in self._head)

    @property
    def size_bytes(self) -> int:
        return sum(s.bytes for s in self._segments)

    def oldest_created(self) -> float | None:
        """When the oldest waiting record was made (s since the epoch), or None if none waits."""
        if self._head:
            return self._head[0].created
        for segment in self._segments:
            if segment.records > segment.popped:
                return segment.first_created
        return None

    # --- writing ---
    def append(self, record: OutRecord) -> bool:
        """Store `record` at the end; False if it was dropped because the spool is full (drop_newest)."""
        payload = zlib.compress(_encode_payload(record), 1)
        entry = _ENTRY.pack(len(payload), zlib.crc32(payload), record.created, record.frames, record.first_ts)
        size = len(entry) + len(payload)
        if not self._make_room(size, record):
            return False
        tail = self._segments[-1] if self._segments and self._tail_file is not None else None
        if tail is None or tail.bytes + size > self.segment_bytes:
            tail = self._open_tail()
        try:
            self._tail_file.write(entry)
            self._tail_file.write(payload)
        except OSError as exc:
            raise SpoolError(f"cannot write spool segment {tail.path}: {exc}") from exc
        tail.records += 1
        tail.frames += record.frames
        tail.bytes += size
        if tail.first_created is None:
            tail.first_created = record.created
            tail.first_ts = record.first_ts
        tail.last_ts = record.first_ts
        return True

    def push_front(self, records: list[OutRecord]) -> None:
        """Write `records` (oldest first) before everything spooled: unconfirmed records at shutdown."""
        if not records:
            return
        first = self._segments[0].id if self._segments else _FIRST_ID
        segment = _Segment(first - 1, self.directory / f"{first - 1:020d}{_SUFFIX}")
        with open(segment.path, "wb") as file:
            for record in records:
                payload = zlib.compress(_encode_payload(record), 1)
                file.write(
                    _ENTRY.pack(len(payload), zlib.crc32(payload), record.created, record.frames, record.first_ts)
                )
                file.write(payload)
                segment.records += 1
                segment.frames += record.frames
                segment.bytes += _ENTRY.size + len(payload)
                if segment.first_created is None:
                    segment.first_created, segment.first_ts = record.created, record.first_ts
                segment.last_ts = record.first_ts
        self._segments.appendleft(segment)

    def _open_tail(self) -> _Segment:
        self._close_tail()
        next_id = self._segments[-1].id + 1 if self._segments else _FIRST_ID
        segment = _Segment(next_id, self.directory / f"{next_id:020d}{_SUFFIX}")
        try:
            self._tail_file = open(segment.path, "ab")  # noqa: SIM115 - kept open across appends
        except OSError as exc:
            raise SpoolError(f"cannot create spool segment {segment.path}: {exc}") from exc
        self._segments.append(segment)
        return segment

    def _close_tail(self) -> None:
        if self._tail_file is not None:
            self._tail_file.close()
            self._tail_file = None

    def _make_room(self, size: int, record: OutRecord) -> bool:
        if self.size_bytes + size <= self.max_bytes:
            if self._refusing:
                self.log.info("spool has room again; spooling new records", spool_bytes=self.size_bytes)
            self._refusing = False
            return True
        if self.on_full == "drop_newest":
            self.dropped_records += 1
            self.dropped_frames += record.frames
            if not self._refusing:
                self.log.warning(
                    "spool full: dropping NEW records until Kafka drains it",
                    spool_bytes=self.size_bytes,
                    max_bytes=self.max_bytes,
                    first_dropped_frame_time=record.first_ts,
                )
            self._refusing = True
            return False
        records = frames = 0
        first_ts = last_ts = None
        while self._segments and self.size_bytes + size > self.max_bytes:
            victim = self._segments[0]
            if victim is self._segments[-1] and self._tail_file is not None:
                self._close_tail()
            self._segments.popleft()
            if victim.id == self._head_id:
                lost = list(self._head)
                self._head.clear()
                self._head_id = None
                records += len(lost)
                frames += sum(r.frames for r in lost)
            else:
                records += victim.records - victim.popped
                frames += victim.frames if victim.popped == 0 else 0
            first_ts = victim.first_ts if first_ts is None else first_ts
            last_ts = victim.last_ts
            victim.path.unlink(missing_ok=True)
        self.dropped_records += records
        self.dropped_frames += frames
        if records:
            self.log.warning(
                "spool full: dropped the OLDEST spooled data",
                dropped_records=records,
                dropped_frames=frames,
                from_frame_time=first_ts,
                to_frame_time=last_ts,
                max_bytes=self.max_bytes,
            )
        return True

    # --- reading ---
    def pop_front(self) -> OutRecord | None:
        """The oldest waiting record (its segment stays on disk until `confirm`ed), or None."""
        while not self._head:
            segment = next((s for s in self._segments if s.records > s.popped), None)
            if segment is None:
                return None
            if segment is self._segments[-1] and self._tail_file is not None:
                self._close_tail()  # reading the segment being written: start a new one for appends
            self._head.extend(self._read_segment(segment)[segment.popped :])
            self._head_id = segment.id
            if not self._head:  # torn or empty: nothing more to read there
                segment.records = segment.popped
                self._release(segment)
        record = self._head.popleft()
        segment = self._find(record.segment)
        if segment is not None:
            segment.popped += 1
            segment.unconfirmed += 1
        return record

    def confirm(self, record: OutRecord) -> None:
        """Kafka confirmed `record` (read from this spool): its segment goes once all of it is confirmed."""
        segment = self._find(record.segment)
        record.segment = None
        if segment is None:
            return
        segment.unconfirmed -= 1
        self._release(segment)

    def _release(self, segment: _Segment) -> None:
        if segment.popped >= segment.records and segment.unconfirmed <= 0:
            if segment is self._segments[-1] and self._tail_file is not None:
                return
            self._segments.remove(segment)
            segment.path.unlink(missing_ok=True)

    def _find(self, segment_id: int | None) -> _Segment | None:
        if segment_id is None:
            return None
        return next((s for s in self._segments if s.id == segment_id), None)

    def _read_segment(self, segment: _Segment) -> list[OutRecord]:
        try:
            data = segment.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SpoolError(f"cannot read spool segment {segment.path}: {exc}") from exc
        records, _ = self._parse(data, segment)
        return records

    def _parse(self, data: bytes, segment: _Segment) -> tuple[list[OutRecord], int]:
        records: list[OutRecord] = []
        pos = 0
        while pos + _ENTRY.size <= len(data):
            length, crc, created, frames, first_ts = _ENTRY.unpack_from(data, pos)
            payload = data[pos + _ENTRY.size : pos + _ENTRY.size + length]
            if len(payload) < length or zlib.crc32(payload) != crc:
                break
            records.append(_decode_payload(zlib.decompress(payload), created, frames, first_ts, segment.id))
            pos += _ENTRY.size + length
        if pos < len(data):
            self.log.warning("spool segment has a torn entry at its end; dropped it", segment=str(segment.path), at=pos)
        return records, pos

    def _recover(self) -> None:
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            try:
                segment_id = int(path.stem)
            except ValueError:
                continue
            segment = _Segment(segment_id, path)
            records, used = self._parse(path.read_bytes(), segment)
            if not records:
                path.unlink(missing_ok=True)
                continue
            segment.records = len(records)
            segment.frames = sum(r.frames for r in records)
            segment.bytes = used
            segment.first_created, segment.first_ts = records[0].created, records[0].first_ts
            segment.last_ts = records[-1].first_ts
            self._segments.append(segment)
        if self._segments:
            self.log.info(
                "spool holds records from a previous run; they are sent first",
                records=len(self),
                frames=self.frames,
                bytes=self.size_bytes,
            )

    def close(self) -> None:
        self._close_tail()
        try:
            for segment in list(self._segments):
                if segment.records == 0:
                    segment.path.unlink(missing_ok=True)
        finally:
            self._segments.clear()
            self._head.clear()

    def flush(self) -> None:
        """Hand written data to the OS (not fsync: a CAN gateway's flash card outlives fewer syncs)."""
        if self._tail_file is not None:
            self._tail_file.flush()

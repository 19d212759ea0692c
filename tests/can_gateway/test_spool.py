"""The disk spool: order, durability across reopen, torn entries, and its bound."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from telestack.can_gateway.spool import DiskSpool, OutRecord


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.events.append(("warning", event, kw))

    def error(self, event: str, **kw: Any) -> None:
        self.events.append(("error", event, kw))


def _record(i: int, size: int = 100) -> OutRecord:
    noise = random.Random(i).randbytes(size)  # incompressible: the spool deflates what it stores
    return OutRecord("can.raw", f"ved/b{i % 2}".encode(), i.to_bytes(4, "big") + noise, [("bus", b"b")], 10, i)


def _drain(spool: DiskSpool) -> list[int]:
    got = []
    while (record := spool.pop_front()) is not None:
        got.append(int.from_bytes(record.value[:4], "big"))
        spool.confirm(record)
    return got


def test_records_come_back_in_order_across_segments(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10_000_000, segment_bytes=65_536)
    for i in range(2000):
        spool.append(_record(i))
    assert len(spool) == 2000 and len(list(tmp_path.glob("*.spool"))) > 2
    first = spool.pop_front()
    assert first is not None and first.key == b"ved/b0" and first.headers == [("bus", b"b")] and first.frames == 10
    spool.confirm(first)
    for i in range(2000, 2100):  # appends while draining go after
        spool.append(_record(i))
    assert _drain(spool) == list(range(1, 2100))
    assert len(spool) == 0 and not list(tmp_path.glob("*.spool"))


def test_unconfirmed_records_survive_a_restart(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10_000_000, segment_bytes=65_536)
    for i in range(500):
        spool.append(_record(i))
    taken = [spool.pop_front() for _ in range(300)]
    for record in taken[:100]:
        assert record is not None
        spool.confirm(record)
    spool.flush()
    # crash: no close; a new spool on the same directory sends every unconfirmed record again, in order
    log = _Log()
    reopened = DiskSpool(tmp_path, max_bytes=10_000_000, segment_bytes=65_536, log=log)
    got = _drain(reopened)
    assert got == sorted(got) and set(range(100, 500)) <= set(got)
    assert any("previous run" in event for _, event, _ in log.events)


def test_a_torn_last_entry_is_dropped(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10_000_000, segment_bytes=1_000_000)
    for i in range(10):
        spool.append(_record(i))
    spool.close()
    (segment,) = tmp_path.glob("*.spool")
    segment.write_bytes(segment.read_bytes()[:-20])  # power cut in the middle of the last write
    log = _Log()
    assert _drain(DiskSpool(tmp_path, max_bytes=10_000_000, segment_bytes=1_000_000, log=log)) == list(range(9))
    assert any("torn entry" in event for _, event, _ in log.events)


def test_push_front_goes_before_everything(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10_000_000, segment_bytes=1_000_000)
    for i in range(10, 20):
        spool.append(_record(i))
    spool.push_front([_record(i) for i in range(10)])
    spool.close()
    assert _drain(DiskSpool(tmp_path, max_bytes=10_000_000, segment_bytes=1_000_000)) == list(range(20))


def test_full_spool_drops_the_oldest_and_says_what(tmp_path: Path) -> None:
    log = _Log()
    spool = DiskSpool(tmp_path, max_bytes=1_048_576, segment_bytes=65_536, log=log)
    for i in range(2000):  # ~2.3 MB into 1 MB
        assert spool.append(_record(i, 1000))
    assert spool.size_bytes <= 1_048_576
    assert spool.dropped_records > 0 and spool.dropped_frames == spool.dropped_records * 10
    got = _drain(spool)
    assert got == list(range(2000 - len(got), 2000))  # the newest survive, still in order
    warnings = [kw for level, event, kw in log.events if level == "warning" and "OLDEST" in event]
    assert warnings and warnings[0]["dropped_frames"] > 0 and warnings[0]["from_frame_time"] == 0


def test_full_spool_can_refuse_new_records_instead(tmp_path: Path) -> None:
    log = _Log()
    spool = DiskSpool(tmp_path, max_bytes=1_048_576, segment_bytes=65_536, on_full="drop_newest", log=log)
    accepted = [i for i in range(2000) if spool.append(_record(i, 1000))]
    assert accepted == list(range(len(accepted))) and len(accepted) < 2000
    assert spool.dropped_records == 2000 - len(accepted)
    assert [kw for level, event, kw in log.events if "NEW records" in event]
    assert _drain(spool) == accepted


def test_spooled_records_are_stored_deflated(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=10_000_000, segment_bytes=10_000_000)
    line = b"BmsCellVoltages,bus=battery,mux=3,vehicle=ved-01 Cell073Voltage=3.7124," * 400
    spool.append(OutRecord("telemetry", b"ved-01", line, [], 400, 1.0))
    assert spool.size_bytes < len(line) / 10
    record = spool.pop_front()
    assert record is not None and record.value == line

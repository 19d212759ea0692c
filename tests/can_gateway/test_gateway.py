"""The gateway against real Kafka: recorded sessions, garbage, broken DBCs, live buses and hot reload."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import can
import pytest
from cantools.database import Database

from telestack.can_gateway.command import build_gateway
from telestack.can_gateway.decoder import EXTENDED, FD, Frame
from telestack.can_gateway.errors import DatabaseError, MappingError
from telestack.can_gateway.gateway import Gateway
from telestack.can_gateway.rawframes import decode_raw
from telestack.core.kafka import Record
from telestack.core.lineproto import parse_lines
from telestack.core.runtime import Shutdown
from telestack.core.settings import KafkaSettings
from tests.can_gateway.conftest import (
    DATA,
    GARBAGE_LOG,
    SESSION_LOG,
    VEHICLE_DBC,
    gateway_settings,
)
from tests.harness import RunningService
from tests.kafka_reader import read_topic
from tests.polling import wait_until


def _lines(records: list[Record]) -> list[str]:
    return [line for record in records for line in record.value.decode().splitlines()]


def _raw_frames(records: list[Record]) -> dict[str, list[Frame]]:
    by_bus: dict[str, list[Frame]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.header("encoding") == "telestack-can-raw/1"
        by_bus.setdefault(record.header("bus") or "", []).extend(decode_raw(record.value))
    return by_bus


def test_recorded_session_reaches_kafka_exactly_as_cantools_decodes_it(
    gateway_kafka: KafkaSettings,
    tmp_path: Path,
    vehicle_db: Database,
    session_frames: list[tuple[str, Frame]],
) -> None:
    settings = gateway_settings(gateway_kafka, tmp_path / "spool", replay={"files": [SESSION_LOG], "speed": 0})
    gateway = build_gateway(settings)
    assert gateway.run(Shutdown()) == 0  # a replay ends by itself
    total = len(session_frames)
    assert gateway.stats.frames == total and gateway.stats.lines == total
    assert not gateway.stats.unknown and not gateway.stats.failed

    telemetry = read_topic(gateway_kafka, gateway_kafka.topics.telemetry, lambda got: len(_lines(got)) >= total)
    assert {r.key for r in telemetry} == {b"ved-01"} and {r.partition for r in telemetry} == {telemetry[0].partition}
    points = [point for line in _lines(telemetry) for point in parse_lines(line)]
    assert len(points) == total
    # Frames are identified by (bus, message, timestamp): unique in the recording.
    expected: dict[tuple[str, str, int], dict[str, Any]] = {}
    for bus, (ts, key, _flags, data) in session_frames:
        message = vehicle_db.get_message_by_frame_id(key)
        decoded = vehicle_db.decode_message(key & ~EXTENDED, data, force_extended_id=bool(key & EXTENDED))
        expected[(bus, message.name, round(ts * 1_000_000) * 1000)] = dict(decoded)  # type: ignore[arg-type]
    assert len(expected) == total
    for point in points:
        want = expected.pop((point.tags["bus"], point.measurement, point.time_ns))  # type: ignore[arg-type]
        assert point.tags["vehicle"] == "ved-01"
        for name, value in want.items():
            if isinstance(value, float) and not math.isfinite(value):
                assert name not in point.fields
            elif isinstance(value, int | float):
                assert point.fields[name] == value and type(point.fields[name]) is type(value), name
            else:
                assert point.fields[name] == str(value), name
        assert len(point.fields) == len(want)
    assert not expected  # every frame arrived, once

    raw = read_topic(
        gateway_kafka, gateway_kafka.topics.can_raw, lambda got: sum(len(decode_raw(r.value)) for r in got) >= total
    )
    by_bus = _raw_frames(raw)
    for bus in ("powertrain", "chassis", "battery"):
        assert by_bus[bus] == [frame for b, frame in session_frames if b == bus]
    assert any(f[2] & FD for f in by_bus["battery"])
    assert {r.key for r in raw} == {b"ved-01/powertrain", b"ved-01/chassis", b"ved-01/battery"}


def _sample(gateway: Gateway, name: str, **labels: str) -> float:
    return gateway.metrics.registry.get_sample_value(name, labels) or 0.0


def test_garbage_frames_are_counted_not_fatal(gateway_kafka: KafkaSettings, tmp_path: Path) -> None:
    settings = gateway_settings(
        gateway_kafka, tmp_path / "spool", replay={"files": [GARBAGE_LOG], "speed": 0}, forward_unknown=True
    )
    gateway = build_gateway(settings)
    assert gateway.run(Shutdown()) == 0
    assert gateway.stats.frames == 12
    assert gateway.stats.unknown == {
        ("powertrain", 0x7FF): 2,
        ("powertrain", 0x1ABCDEF | EXTENDED): 1,
        ("powertrain", 0x100 | EXTENDED): 1,
    }
    assert gateway.stats.failed == {
        ("powertrain", 0x100): 1,
        ("battery", 0x18F00200 | EXTENDED): 1,
        ("battery", 0x18F00300 | EXTENDED): 1,
    }
    assert _sample(gateway, "telestack_can_gateway_unknown_frames_total", bus="powertrain", id="0x7FF") == 2
    assert _sample(gateway, "telestack_can_gateway_decode_failures_total", bus="battery", id="0x18F00200x") == 1
    assert (
        _sample(gateway, "telestack_can_gateway_frames_total", bus="powertrain")
        + _sample(gateway, "telestack_can_gateway_frames_total", bus="battery")
        == 12
    )
    records = read_topic(gateway_kafka, gateway_kafka.topics.telemetry, lambda got: len(_lines(got)) >= 7)
    points = [p for line in _lines(records) for p in parse_lines(line)]
    assert sorted(p.measurement for p in points) == ["BmsCellVoltages"] + ["EngineStatus"] * 2 + ["can_unknown"] * 4
    unknown = [p for p in points if p.measurement == "can_unknown"]
    assert {p.tags["id"] for p in unknown} == {"0x7FF", "0x01ABCDEFx", "0x00000100x"}
    assert {"data": "0102030405060708", "dlc": 8} in [p.fields for p in unknown]


def test_broken_database_or_mapping_fails_at_start_naming_it(gateway_kafka: KafkaSettings, tmp_path: Path) -> None:
    broken = DATA / "broken_syntax.dbc"
    with pytest.raises(DatabaseError, match=r"broken_syntax\.dbc.*line 6"):
        build_gateway(gateway_settings(gateway_kafka, tmp_path, databases=[broken], replay={"files": [SESSION_LOG]}))
    with pytest.raises(MappingError, match="no database defines: Nope"):
        build_gateway(gateway_settings(gateway_kafka, tmp_path, mapping={"Nope": {}}, replay={"files": [SESSION_LOG]}))
    proc = subprocess.run(
        [sys.executable, "-m", "telestack", "can-gateway", "--can-gateway.databases", f'["{broken}"]'],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "telestack can-gateway: error: cannot load CAN database" in proc.stderr and "line 6" in proc.stderr


def test_three_live_buses_and_a_hot_reload_lose_no_frame(
    gateway_kafka: KafkaSettings,
    tmp_path: Path,
    unique: str,
    run_gateway: Callable[..., RunningService[Gateway]],
) -> None:
    dbc = tmp_path / "vehicle.dbc"
    shutil.copy(VEHICLE_DBC, dbc)
    names = ("powertrain", "chassis", "battery")
    buses = [{"name": n, "interface": "virtual", "channel": f"{unique}-{n}", "fd": n == "battery"} for n in names]
    settings = gateway_settings(gateway_kafka, tmp_path / "spool", databases=[dbc], buses=buses, reload_interval_s=0.2)
    running = run_gateway(settings)
    senders = {n: can.Bus(interface="virtual", channel=f"{unique}-{n}") for n in names}
    new_id = 0x7F0
    try:
        sent = 0

        def burst(count: int) -> None:
            nonlocal sent
            for i in range(count):
                bus = names[i % 3]
                ident = new_id if i % 10 == 0 else 0x110
                data = (sent + i).to_bytes(8, "little")
                senders[bus].send(can.Message(arbitration_id=ident, is_extended_id=False, data=data))
            sent += count

        burst(1500)
        wait_until(lambda: running.service.stats.frames >= 1500, 20, what="first burst read")
        # A new message appears in the DBC while frames keep flowing.
        text = dbc.read_text().replace(
            "\nBO_ 272 VehicleSpeed",
            f'\nBO_ {new_id} Lap: 8 TCU\n SG_ LapCounter : 0|32@1+ (1,0) [0|4294967295] "" TELESTACK\n'
            "\nBO_ 272 VehicleSpeed",
        )
        reloads = running.service.watcher.reloads
        burst(300)
        dbc.write_text(text)
        for _ in range(4):
            burst(300)
        wait_until(lambda: running.service.watcher.reloads > reloads, 20, what="the DBC reload")
        time.sleep(0.3)  # let the gateway swap the decoders in
        burst(1500)
        wait_until(lambda: running.service.stats.frames >= sent, 20, what="every frame read")
    finally:
        for sender in senders.values():
            sender.shutdown()
    assert running.stop() == 0
    stats = running.service.stats
    unknown = sum(n for (bus, key), n in stats.unknown.items() if key == new_id)
    assert stats.frames == sent == 4500
    lap_frames = sent // 10
    assert 0 < unknown < lap_frames  # unknown before the reload, decoded after it
    assert stats.lines == sent - unknown
    raw = read_topic(
        gateway_kafka, gateway_kafka.topics.can_raw, lambda got: sum(len(decode_raw(r.value)) for r in got) >= sent
    )
    by_bus = _raw_frames(raw)
    assert sorted(by_bus) == sorted(names)
    for bus in names:
        counters = [int.from_bytes(f[3], "little") for f in by_bus[bus]]
        assert counters == sorted(counters) and len(counters) == sent // 3  # every frame, in order, per bus
    telemetry = read_topic(gateway_kafka, gateway_kafka.topics.telemetry, lambda got: len(_lines(got)) >= stats.lines)
    laps = [p for line in _lines(telemetry) for p in parse_lines(line) if p.measurement == "Lap"]
    assert len(laps) == lap_frames - unknown


def test_simulated_vehicle_over_udp_multicast_reaches_kafka(
    gateway_kafka: KafkaSettings, tmp_path: Path, run_gateway: Callable[..., RunningService[Gateway]]
) -> None:
    import json
    import os
    import random

    from telestack.can_gateway.settings import UDP_GROUP
    from telestack.can_gateway.sources import read_log

    base = random.Random().randrange(20_000, 60_000, 3)  # ports of our own: other tests may multicast too
    buses = [
        {
            "name": name,
            "interface": "udp_multicast",
            "channel": UDP_GROUP,
            "fd": name == "battery",
            "options": {"port": base + i},
        }
        for i, name in enumerate(("powertrain", "chassis", "battery"))
    ]
    running = run_gateway(gateway_settings(gateway_kafka, tmp_path / "spool", buses=buses))
    time.sleep(0.5)  # the sockets join the group
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stray:  # python-can's recv raised on it
        stray.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
        stray.sendto(b"\xc1 not msgpack", (UDP_GROUP, base))
    record = tmp_path / "sent.log"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "telestack",
            "simulate",
            "vehicle",
            "--vehicle-simulator.buses",
            json.dumps(buses),
            "--vehicle-simulator.duration-s",
            "2",
            "--vehicle-simulator.record",
            str(record),
            "--vehicle-simulator.database",
            str(VEHICLE_DBC),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TELESTACK_LOG__LEVEL": "WARNING"},
    )
    assert proc.returncode == 0, proc.stderr
    sent: dict[str, list[tuple[int, bytes]]] = {}
    for channel, frame in read_log(record):
        sent.setdefault(str(channel), []).append((frame[1], frame[3]))
    total = sum(len(v) for v in sent.values())
    assert total == 1440  # 720 frames/s for 2 s
    wait_until(lambda: running.service.stats.frames >= total, 20, what="every simulated frame")
    assert running.stop() == 0
    assert (
        _sample(running.service, "telestack_can_gateway_unreadable_input_total", bus="powertrain", kind="msgpack") == 1
    )
    assert running.service.stats.frames == total and not running.service.stats.failed
    raw = read_topic(
        gateway_kafka, gateway_kafka.topics.can_raw, lambda got: sum(len(decode_raw(r.value)) for r in got) >= total
    )
    received = {bus: [(f[1], f[3]) for f in frames] for bus, frames in _raw_frames(raw).items()}
    assert received == sent

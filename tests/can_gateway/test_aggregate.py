"""Edge aggregation: aligned windows per series, statistics per field; through the gateway into Kafka."""

from __future__ import annotations

from pathlib import Path
from statistics import mean

import pytest
from cantools.database import Database

from telestack.can_gateway.aggregate import Aggregator
from telestack.can_gateway.command import build_gateway
from telestack.can_gateway.decoder import Frame
from telestack.core.kafka import ensure_topics
from telestack.core.lineproto import UInt, parse_lines
from telestack.core.runtime import Shutdown
from telestack.core.settings import KafkaSettings
from tests.can_gateway.conftest import SESSION_LOG, gateway_settings
from tests.kafka_reader import read_topic


def test_windows_are_aligned_per_series_and_keep_types() -> None:
    agg = Aggregator(0.5)
    out = agg.add_lines(
        [
            'm,bus=a,mux=1 v=1i,s="ON" 1000000000',
            "m,bus=a,mux=2 v=10i 1100000000",  # another series: its own window
            'm,bus=a,mux=1 v=4i,s="OFF" 1400000000',
            "m,bus=a,mux=1 v=7i 1600000000",  # closes mux=1's [1.0, 1.5) window
        ]
    )
    (point,) = parse_lines("\n".join(out))
    assert point.tags == {"bus": "a", "mux": "1"} and point.time_ns == 1_000_000_000
    assert point.fields == {
        "v_mean": 2.5, "v_min": 1, "v_max": 4, "v_last": 4, "v_count": 2, "s_last": "OFF", "s_count": 2,
    }  # fmt: skip
    assert parse_lines("\n".join(agg.flush_before(1_600_000_000)))[0].tags["mux"] == "2"
    (last,) = parse_lines("\n".join(agg.flush_all()))
    assert last.time_ns == 1_500_000_000 and last.fields["v_count"] == 1


def test_a_line_it_cannot_read_is_set_aside_and_the_others_go_on() -> None:
    # Issue 13, finding 7: one refused line raised LineProtocolError out of add_lines and stopped the gateway.
    agg = Aggregator(1.0, ("max", "count"))
    out = agg.add_lines(
        [
            "m,bus=a v=1i 1000000000",
            "m,bus=a v=18446744073709551616i 1100000000",  # 2**64: no line protocol integer holds it
            "m,bus=a v=3i 1200000000\nm,bus=a v=5i 2000000000",
        ]
    )
    (point,) = parse_lines("\n".join(out))
    assert point.fields == {"v_max": 3, "v_count": 2}
    ((line, reason),) = agg.take_rejected()
    assert line == "m,bus=a v=18446744073709551616i 1100000000" and reason
    assert agg.take_rejected() == []


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="among mean"):
        Aggregator(1.0, ["median"])
    with pytest.raises(ValueError, match="positive"):
        Aggregator(0)


def test_gateway_aggregates_a_session_per_second(
    gateway_kafka: KafkaSettings, tmp_path: Path, vehicle_db: Database, session_frames: list[tuple[str, Frame]]
) -> None:
    settings = gateway_settings(
        gateway_kafka,
        tmp_path / "spool",
        replay={"files": [SESSION_LOG], "speed": 0},
        aggregation={"interval_s": 1.0, "functions": ["mean", "max", "count"]},
    )
    gateway = build_gateway(settings)
    assert gateway.run(Shutdown()) == 0
    # 3 s of frames starting at 1700000000.005: windows [0,1), [1,2), [2,3), [3,4) per series
    records = read_topic(
        gateway_kafka,
        gateway_kafka.topics.telemetry,
        lambda got: sum(p.measurement == "VehicleSpeed" for r in got for p in parse_lines(r.value.decode())) >= 4,
    )
    points = [p for r in records for p in parse_lines(r.value.decode())]
    assert len(points) < len(session_frames) / 10  # the point of it: far fewer lines on a thin link
    speeds = sorted((p for p in points if p.measurement == "VehicleSpeed"), key=lambda p: p.time_ns or 0)
    assert [p.time_ns for p in speeds] == [(1_700_000_000 + k) * 10**9 for k in range(4)]
    message = vehicle_db.get_message_by_name("VehicleSpeed")
    for point in speeds:
        start = (point.time_ns or 0) / 1e9
        values = [
            message.decode(f[3])["VehicleSpeed"]
            for bus, f in session_frames
            if f[1] == message.frame_id and start <= f[0] < start + 1
        ]
        assert point.fields["VehicleSpeed_count"] == len(values)
        assert point.fields["VehicleSpeed_mean"] == pytest.approx(mean(values))  # type: ignore[arg-type]
        assert point.fields["VehicleSpeed_max"] == max(values)  # type: ignore[type-var]
    cells = [p for p in points if p.measurement == "BmsCellVoltages"]
    assert {p.tags["mux"] for p in cells} == {str(g) for g in range(6)}  # one series per cell group


U64_DBC = """VERSION ""

NS_ :

BS_:

BU_: ECU

BO_ 256 Odometer: 8 ECU
 SG_ TotalTicks : 0|64@1+ (1,0) [0|18446744073709551615] "" Vector__XXX

BO_ 257 Speed: 1 ECU
 SG_ Kmh : 0|8@1+ (1,0) [0|255] "km/h" Vector__XXX
"""


def test_a_frame_the_aggregator_refuses_is_dead_lettered_and_the_gateway_goes_on(
    gateway_kafka: KafkaSettings, tmp_path: Path, unique: str
) -> None:
    """Issue 13, finding 7: a 64-bit unsigned signal (or any line the aggregator refuses) stopped the loop."""
    dlq = f"dlq-{unique}"
    ensure_topics(gateway_kafka, {dlq: 1})
    kafka = gateway_kafka.model_copy(update={"topics": gateway_kafka.topics.model_copy(update={"dlq": dlq})})
    dbc = tmp_path / "u64.dbc"
    dbc.write_text(U64_DBC)
    settings = gateway_settings(
        kafka, tmp_path / "spool", databases=[dbc], aggregation={"interval_s": 1.0, "functions": ["max", "count"]}
    )
    gateway = build_gateway(settings)
    t0 = 1_700_000_000.0
    frames: list[Frame] = [(t0 + 0.05 + i * 0.1, 257, 0, bytes([i])) for i in range(5)]
    frames.append((t0 + 0.5, 256, 0, b"\xff" * 8))  # TotalTicks = 2**64 - 1
    frames += [(t0 + 0.55 + i * 0.1, 257, 0, bytes([50 + i])) for i in range(20)]
    frames.sort()
    try:
        for start in range(0, len(frames), 4):  # several batches: the loop goes on after the bad one
            gateway.process("can0", frames[start : start + 4])
        gateway.flush(0.0, force=True)
    finally:
        assert gateway.outbox.close(30) == 0
    telemetry = read_topic(
        kafka,
        kafka.topics.telemetry,
        lambda got: sum(p.measurement == "Speed" for r in got for p in parse_lines(r.value.decode())) >= 3,
    )
    speeds = sorted(
        (p for r in telemetry for p in parse_lines(r.value.decode()) if p.measurement == "Speed"),
        key=lambda p: p.time_ns or 0,
    )
    assert [p.fields["Kmh_count"] for p in speeds] == [10, 10, 5]  # every speed frame, before and after
    odometer = [p for p in (p for r in telemetry for p in parse_lines(r.value.decode())) if p.measurement == "Odometer"]
    # Written as uint64 (issue 12); before that fix the aggregator refused it, which must not stop the loop.
    assert [p.fields["TotalTicks_max"] for p in odometer] == [2**64 - 1]


def test_uint64_fields_keep_their_type() -> None:
    agg = Aggregator(1.0)
    agg.add_lines([f"m,bus=a u={2**64 - 1}u 1000000000", f"m,bus=a u={2**63}u 1100000000"])
    (point,) = parse_lines("\n".join(agg.flush_all()))
    assert point.fields == {
        "u_mean": (2**64 - 1 + 2**63) / 2,
        "u_min": 2**63,
        "u_max": 2**64 - 1,
        "u_last": 2**63,
        "u_count": 2,
    }
    assert [type(point.fields[k]) for k in ("u_min", "u_max", "u_last", "u_count")] == [UInt, UInt, UInt, int]

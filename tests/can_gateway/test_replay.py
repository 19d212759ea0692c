"""``telestack can-replay``: the raw archive decoded again (with a corrected DBC) and exported to candump."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from telestack.can_gateway.command import build_gateway
from telestack.can_gateway.decoder import Frame
from telestack.can_gateway.replay import iter_raw_archive, replay
from telestack.can_gateway.sources import read_log
from telestack.cli import main
from telestack.core.kafka import KafkaProducer
from telestack.core.lineproto import parse_lines
from telestack.core.runtime import Shutdown
from telestack.core.settings import KafkaSettings
from tests.can_gateway.conftest import SESSION_LOG, VEHICLE_DBC, gateway_settings
from tests.kafka_reader import read_topic


@pytest.fixture
def archived(gateway_kafka: KafkaSettings, tmp_path: Path) -> KafkaSettings:
    """The recorded session, sent through the gateway: its frames are in the raw archive."""
    settings = gateway_settings(gateway_kafka, tmp_path / "spool", replay={"files": [SESSION_LOG], "speed": 0})
    assert build_gateway(settings).run(Shutdown()) == 0
    return gateway_kafka


def _flag_cli(kafka: KafkaSettings) -> list[str]:
    return [
        "--kafka.bootstrap-servers",
        kafka.bootstrap_servers,
        "--kafka.topics.can-raw",
        kafka.topics.can_raw,
        "--kafka.topics.telemetry",
        kafka.topics.telemetry,
    ]


def test_raw_archive_exports_the_session_as_a_candump_log(
    archived: KafkaSettings, tmp_path: Path, session_frames: list[tuple[str, Frame]]
) -> None:
    exported = tmp_path / "export.log"
    lines = tmp_path / "lines.txt"
    status = main(
        [
            "can-replay",
            *("--source", "kafka", "--output", str(lines), "--export-candump", str(exported)),
            *_flag_cli(archived),
            *("--can-gateway.databases", f'["{VEHICLE_DBC}"]'),
        ]
    )
    assert status == 0
    back = list(read_log(exported, "python-can"))  # python-can reads our export
    assert sorted(((channel, frame) for channel, frame in back), key=lambda item: (item[1][0], item[1][1])) == sorted(
        session_frames, key=lambda item: (item[1][0], item[1][1])
    )
    points = parse_lines(lines.read_text())
    assert len(points) == len(session_frames)
    assert {p.tags["vehicle"] for p in points} == {"ved-01"}


def test_corrected_dbc_redecodes_the_archive_into_telemetry(
    archived: KafkaSettings, tmp_path: Path, session_frames: list[tuple[str, Frame]]
) -> None:
    corrected = tmp_path / "corrected.dbc"
    shutil.copy(VEHICLE_DBC, corrected)
    # The wheel-speed scale was wrong: 0.01 → 0.02 km/h per bit.
    text = corrected.read_text()
    corrected.write_text(text.replace("SG_ WheelSpeedFL : 7|16@0+ (0.01,0)", "SG_ WheelSpeedFL : 7|16@0+ (0.02,0)"))
    options = gateway_settings(archived, tmp_path / "spool", databases=[corrected]).can_gateway
    producer = KafkaProducer(archived)
    result = replay(
        iter_raw_archive(archived, bus="powertrain"),
        options,
        producer=producer,
        telemetry_topic=archived.topics.telemetry,
    )
    assert producer.close(30) == 0
    powertrain = [f for bus, f in session_frames if bus == "powertrain"]
    assert result.frames == len(powertrain) and result.lines == len(powertrain) and not result.failed
    total = len(session_frames) + len(powertrain)
    records = read_topic(
        archived, archived.topics.telemetry, lambda got: sum(len(r.value.splitlines()) for r in got) >= total
    )
    wheels: dict[int, list[float]] = {}
    for record in records:
        for point in parse_lines(record.value.decode()):
            if point.measurement == "WheelSpeeds":
                wheels.setdefault(point.time_ns or 0, []).append(point.fields["WheelSpeedFL"])  # type: ignore[arg-type]
    assert wheels and all(len(v) == 2 for v in wheels.values())
    moving = [v for v in wheels.values() if v[0]]
    assert moving and all(v[1] == pytest.approx(2 * v[0]) for v in moving)  # same instants, corrected values


def test_replay_of_a_log_file_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "can-replay",
            "--source",
            str(SESSION_LOG),
            "--output",
            "-",
            "--can-gateway.databases",
            f'["{VEHICLE_DBC}"]',
            "--can-gateway.vehicle",
            "car-7",
        ]
    )
    assert status == 0
    points = parse_lines(capsys.readouterr().out)
    assert len(points) == 2166 and {p.tags["vehicle"] for p in points} == {"car-7"}
    assert {p.tags["bus"] for p in points} == {"powertrain", "chassis", "battery"}

"""Compiled decoders against cantools itself, signal by signal, and the line protocol they write."""

from __future__ import annotations

import math
import random
from typing import Any

import cantools
import pytest
from cantools.database import Database
from hypothesis import given, settings
from hypothesis import strategies as st

from telestack.can_gateway.decoder import (
    EXTENDED,
    FD,
    REMOTE,
    Frame,
    _fallback_decoder,
    compile_bus,
    decode_frames,
    frame_key,
    load_databases,
)
from telestack.can_gateway.errors import DatabaseError, DecodeFailure, MappingError
from telestack.can_gateway.settings import MessageMapping
from telestack.core.lineproto import UInt, parse_lines
from tests.can_gateway.conftest import DATA, VEHICLE_DBC


def _cantools(db: Database, key: int, data: bytes, decode_choices: bool = True) -> dict[str, Any]:
    return dict(db.decode_message(key & ~EXTENDED, data, decode_choices, force_extended_id=bool(key & EXTENDED)))


def _fields(text: str) -> tuple[dict[str, Any], list[Any]]:
    points = parse_lines(text)
    fields: dict[str, Any] = {}
    for point in points:
        fields.update(point.fields)
    return fields, points


def _assert_same(db: Database, key: int, expected: dict[str, Any], got: dict[str, Any], mode: str) -> None:
    message = db.get_message_by_frame_id(key)
    for name, value in expected.items():
        signal = message.get_signal_by_name(name)
        if isinstance(value, float) and not math.isfinite(value):
            assert name not in got, f"{message.name}.{name}: non-finite value must be left out"
            continue
        if signal.choices and mode == "string":
            assert got[name] == str(value), f"{message.name}.{name}"
        elif signal.choices and mode == "both":
            assert got[name + "_label"] == str(value), f"{message.name}.{name}_label"  # numbers: checked by caller
        else:
            assert got[name] == value, f"{message.name}.{name}: {got[name]!r} != {value!r}"
            assert type(got[name]) is type(value), f"{message.name}.{name}: int/float type differs"
    labels = {n for n in got if n.endswith("_label")} if mode == "both" else set()
    assert set(got) - labels == {n for n, v in expected.items() if not (isinstance(v, float) and not math.isfinite(v))}


@pytest.mark.parametrize("mode", ["string", "number", "both"])
def test_recorded_session_decodes_exactly_as_cantools(
    vehicle_db: Database, session_frames: list[tuple[str, Frame]], mode: str
) -> None:
    decoder = compile_bus([vehicle_db], vehicle="ved-01", bus="b", choices=mode)  # type: ignore[arg-type]
    muxed = fd = extended = 0
    for _bus, (ts, key, flags, data) in session_frames:
        fields, points = _fields(decoder.decode_line(key, data, ts))
        expected = _cantools(vehicle_db, key, data, decode_choices=mode != "number")
        _assert_same(vehicle_db, key, expected, fields, mode)
        if mode == "both":
            numbers = _cantools(vehicle_db, key, data, decode_choices=False)
            for name in fields:
                if not name.endswith("_label"):
                    assert fields[name] == numbers[name]
        point = points[0]
        assert point.time_ns == round(ts * 1_000_000) * 1000
        assert point.tags["vehicle"] == "ved-01" and point.tags["bus"] == "b"
        assert point.measurement == vehicle_db.get_message_by_frame_id(key).name
        muxed += "mux" in point.tags
        fd += bool(flags & FD)
        extended += bool(key & EXTENDED)
    assert muxed > 100 and fd > 100 and extended > 100  # the recording exercises all three


def test_mux_tag_carries_the_selector_chain(vehicle_db: Database) -> None:
    decoder = compile_bus([vehicle_db], vehicle="v", bus="battery")
    cells = vehicle_db.get_message_by_name("BmsCellVoltages")
    data = cells.encode({"CellGroup": 3, **{f"Cell{n:03d}Voltage": 3.7 for n in range(73, 97)}}, strict=False)
    (point,) = parse_lines(decoder.decode_line(frame_key(cells.frame_id, True), data, 1.0))
    assert point.tags["mux"] == "3"
    assert point.fields["CellGroup"] == 3 and point.fields["Cell073Voltage"] == 3.7 and len(point.fields) == 25
    temps = vehicle_db.get_message_by_name("BmsTemperatures")
    data = temps.encode({"TempPage": 0, "TempModule": 4, **{f"Module5Temp{k:02d}": 30.5 for k in range(1, 13)}})
    (point,) = parse_lines(decoder.decode_line(frame_key(temps.frame_id, True), data, 1.0))
    assert point.tags["mux"] == "0/4"
    assert point.fields["Module5Temp12"] == 30.5 and "Module1Temp01" not in point.fields


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_payloads_match_cantools(data: st.DataObject) -> None:
    db = _db()
    message = data.draw(st.sampled_from(db.messages))
    payload = data.draw(st.binary(min_size=message.length, max_size=message.length))
    key = frame_key(message.frame_id, message.is_extended_frame)
    decoder = _decoder()
    try:
        expected: dict[str, Any] | None = _cantools(db, key, payload)
    except cantools.database.DecodeError:
        expected = None
    if expected is None:
        with pytest.raises(DecodeFailure, match="multiplexer"):
            decoder.decode_line(key, payload, 0.5)
        return
    fields, _ = _fields(decoder.decode_line(key, payload, 0.5) or "")
    _assert_same(db, key, expected, fields, "string")


_CACHE: dict[str, Any] = {}


def _db() -> Database:
    if "db" not in _CACHE:
        _CACHE["db"] = load_databases([VEHICLE_DBC])[0]
    return _CACHE["db"]  # type: ignore[no-any-return]


def _decoder() -> Any:
    if "decoder" not in _CACHE:
        _CACHE["decoder"] = compile_bus([_db()], vehicle="v", bus="b")
    return _CACHE["decoder"]


def test_extended_and_standard_ids_with_the_same_number_are_different_frames() -> None:
    db = cantools.database.load_string(
        'VERSION ""\nBU_: N\n'
        'BO_ 256 Std: 1 N\n SG_ A : 0|8@1+ (1,0) [0|255] "" N\n'
        'BO_ 2147483904 Ext: 1 N\n SG_ B : 0|8@1+ (2,0) [0|510] "" N\n'
        'BA_DEF_ BO_ "VFrameFormat" ENUM "StandardCAN","ExtendedCAN";\nBA_ "VFrameFormat" BO_ 2147483904 1;\n',
        database_format="dbc",
    )
    decoder = compile_bus([db], vehicle="v", bus="b")  # type: ignore[list-item]
    assert decoder.decode_line(frame_key(0x100, False), b"\x05", 1.0).startswith("Std,bus=b,vehicle=v A=5i ")
    assert decoder.decode_line(frame_key(0x100, True), b"\x05", 1.0).startswith("Ext,bus=b,vehicle=v B=10i ")


def test_big_endian_signed_and_float_signals() -> None:
    db = cantools.database.load_string(
        'VERSION ""\nBU_: N\n'
        "BO_ 1 M: 8 N\n"
        ' SG_ Be12 : 3|12@0- (0.5,1) [0|0] "" N\n'
        ' SG_ Le5 : 17|5@1- (1,0) [0|0] "" N\n'
        ' SG_ F : 32|32@1- (1,0) [0|0] "" N\n'
        "SIG_VALTYPE_ 1 F : 1;\n",
        database_format="dbc",
    )
    decoder = compile_bus([db], vehicle="v", bus="b")  # type: ignore[list-item]
    rng = random.Random(7)
    for _ in range(500):
        payload = bytes(rng.getrandbits(8) for _ in range(8))
        expected = dict(db.decode_message(1, payload))  # type: ignore[union-attr]
        fields, _ = _fields(decoder.decode_line(1, payload, 1.0) or "M x=1i 1")
        for name, value in expected.items():
            if isinstance(value, float) and not math.isfinite(value):
                assert name not in fields
            else:
                assert fields[name] == value and type(fields[name]) is type(value)


def test_mapping_renames_selects_and_splits_measurements(vehicle_db: Database) -> None:
    mapping = {
        "EngineStatus": MessageMapping(
            measurement="engine",
            exclude=["RevLimiterActive"],
            rename={"EngineSpeed": "rpm", "CoolantTemp": "coolant temp"},
            signal_measurements={"CoolantTemp": "temperatures", "OilPressure": "temperatures"},
        ),
        "WheelSpeeds": MessageMapping(signals=["WheelSpeedFL"]),
    }
    decoder = compile_bus([vehicle_db], vehicle="v", bus="b", mapping=mapping)
    engine = vehicle_db.get_message_by_name("EngineStatus")
    data = engine.encode(
        {
            "EngineSpeed": 3000,
            "EngineTorque": 12.5,
            "CoolantTemp": 90,
            "OilPressure": 3.5,
            "ThrottlePosition": 40,
            "EngineState": "RUNNING",
            "Gear": "THIRD",
            "RevLimiterActive": 0,
        }
    )
    points = {p.measurement: p for p in parse_lines(decoder.decode_line(0x100, data, 2.0))}
    assert set(points) == {"engine", "temperatures"}
    assert points["engine"].fields == {
        "rpm": 3000.0, "EngineTorque": 12.5, "ThrottlePosition": 40.0, "EngineState": "RUNNING", "Gear": "THIRD"
    }  # fmt: skip
    assert points["temperatures"].fields == {"coolant temp": 90, "OilPressure": 3.5}
    assert points["temperatures"].time_ns == points["engine"].time_ns == 2_000_000_000
    wheels = vehicle_db.get_message_by_name("WheelSpeeds")
    line = decoder.decode_line(0x120, wheels.encode({n.name: 10 for n in wheels.signals}), 2.0)
    assert parse_lines(line)[0].fields == {"WheelSpeedFL": 10.0}


def test_mapping_naming_an_unknown_signal_is_an_error(vehicle_db: Database) -> None:
    with pytest.raises(MappingError, match="EngineStatus names unknown signals: Rpm"):
        compile_bus([vehicle_db], vehicle="v", bus="b", mapping={"EngineStatus": MessageMapping(rename={"Rpm": "x"})})


def test_garbage_frames_are_counted_per_id_and_never_raise(vehicle_db: Database) -> None:
    from telestack.can_gateway.sources import read_log

    frames = [frame for _, frame in read_log(DATA / "garbage_frames.log")]
    decoder = compile_bus([vehicle_db], vehicle="v", bus="b")
    lines: list[str] = []
    unknown: dict[int, int] = {}
    failed: dict[int, int] = {}
    decode_frames(decoder, frames, lines, unknown, failed)
    assert len(lines) == 3  # two good EngineStatus, one good cell group
    assert unknown == {0x7FF: 2, 0x1ABCDEF | EXTENDED: 1, 0x100 | EXTENDED: 1}
    assert failed == {0x100: 1, 0x18F00200 | EXTENDED: 1, 0x18F00300 | EXTENDED: 1}
    assert any(f[2] & REMOTE for f in frames)  # skipped: neither unknown nor failed


def test_truncated_data_is_a_decode_failure_and_longer_data_is_cut(vehicle_db: Database) -> None:
    decoder = compile_bus([vehicle_db], vehicle="v", bus="b")
    with pytest.raises(DecodeFailure, match="EngineStatus: 4 data bytes, the database says 8"):
        decoder.decode_line(0x100, bytes(4), 1.0)
    assert decoder.decode_line(0x100, bytes(12), 1.0) == decoder.decode_line(0x100, bytes(8), 1.0)


def test_fallback_decoder_writes_the_same_lines(vehicle_db: Database, session_frames: list[tuple[str, Frame]]) -> None:
    compiled = compile_bus([vehicle_db], vehicle="v", bus="b")
    tags = {"vehicle": "v", "bus": "b"}
    fallbacks = {
        key: _fallback_decoder(message, mapping=MessageMapping(), choices="string", tags=tags, mux_tag="mux")
        for key, message in compiled.messages.items()
    }
    for _bus, (ts, key, _flags, data) in session_frames[:600]:
        assert parse_lines(fallbacks[key](data, ts)) == parse_lines(compiled.decode_line(key, data, ts))


def test_broken_database_names_the_file_and_line(tmp_path: Any) -> None:
    with pytest.raises(DatabaseError, match=r"cannot load CAN database .*broken_syntax\.dbc: .*line 6"):
        load_databases([DATA / "broken_syntax.dbc"])
    with pytest.raises(DatabaseError, match="does not exist"):
        load_databases([tmp_path / "missing.dbc"])


def test_unsigned_64_bit_signals_are_written_as_uint64() -> None:
    """Was `<n>i` for values from 2**63 up: not line protocol (InfluxDB and our parser refuse it)."""
    db = cantools.database.load_string(
        'VERSION ""\nBU_: N\n'
        "BO_ 1 M: 16 N\n"
        ' SG_ U64 : 0|64@1+ (1,0) [0|0] "" N\n'
        ' SG_ S64 : 64|64@1- (1,0) [0|0] "" N\n'
        "BO_ 2 Small: 1 N\n"
        ' SG_ U8 : 0|8@1+ (1,0) [0|255] "" N\n',
        database_format="dbc",
    )
    message = db.get_message_by_frame_id(1)  # type: ignore[union-attr]
    compiled = compile_bus([db], vehicle="v", bus="b")  # type: ignore[list-item]
    fallback = _fallback_decoder(
        message, mapping=MessageMapping(), choices="string", tags={"vehicle": "v"}, mux_tag="mux"
    )
    for u64 in (0, 5, 2**63 - 1, 2**63, 2**64 - 1):
        payload = u64.to_bytes(8, "little") + (-(2**63)).to_bytes(8, "little", signed=True)
        for line in (compiled.decode_line(1, payload, 1.0), fallback(payload, 1.0)):
            (point,) = parse_lines(line)
            assert point.fields == {"U64": u64, "S64": -(2**63)}
            assert type(point.fields["U64"]) is UInt, line  # one type for every value: the field's type is fixed
            assert type(point.fields["S64"]) is int
            assert f"U64={u64}u" in line
    assert "U8=255i" in compiled.decode_line(2, b"\xff", 1.0)  # narrower unsigned signals stay int64

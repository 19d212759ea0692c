"""Hostile CAN frames through the gateway's decoder (`telestack.can_gateway.decoder.decode_frames`).

A frame is decoded into valid line protocol, or counted as unknown (no database defines its id) or failed
(its data does not fit its message), or skipped (remote and error frames): `decode_frames` never raises, so
one bad frame cannot stop a bus. Counters and lines always add up to the frames given.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telestack.can_gateway.decoder import (
    BRS,
    ERROR,
    ESI,
    EXTENDED,
    FD,
    REMOTE,
    BusDecoder,
    Frame,
    compile_bus,
    decode_frames,
    frame_key,
    load_databases,
)
from telestack.core.lineproto import parse_lines
from tests.hostile import corpus

DBC = Path(__file__).resolve().parents[2] / "config" / "dbc" / "telestack_vehicle.dbc"
DATABASES = load_databases([DBC])
DECODERS = {mode: compile_bus(DATABASES, vehicle="v1", bus="powertrain", choices=mode) for mode in ("string", "both")}
FLAGS = {"fd": FD, "brs": BRS, "esi": ESI, "remote": REMOTE, "error": ERROR}
BASE_TS = 1_700_000_000.0
CASES = corpus.load("can_frames.yaml")


def _frame(case: dict[str, Any]) -> Frame:
    if "message" in case:
        message = DATABASES[0].get_message_by_name(case["message"])
        key = frame_key(message.frame_id, message.is_extended_frame)
    else:
        key = frame_key(int(case["id"], 16), bool(case.get("extended")))
    data = bytes.fromhex(case.get("data", ""))
    if "fill" in case:
        value, count = case["fill"]
        data = bytes([value]) * count
    if "fill_after" in case:
        value, count = case["fill_after"]
        data += bytes([value]) * count
    flags = 0
    for name in case.get("flags", []):
        flags |= FLAGS[name]
    timestamp = BASE_TS + float(case.get("ts", 0))  # float("nan") and float("inf") too
    return (timestamp, key, flags, data)


def outcome(decoder: BusDecoder, frames: list[Frame]) -> tuple[list[str], int, int]:
    """Decode; check the invariants; return (lines, unknown count, failed count)."""
    lines: list[str] = []
    unknown: dict[int, int] = {}
    failed: dict[int, int] = {}
    decode_frames(decoder, frames, lines, unknown, failed)  # must not raise, whatever the frames
    skipped = sum(1 for _, _, flags, _ in frames if flags & (REMOTE | ERROR))
    n_unknown, n_failed = sum(unknown.values()), sum(failed.values())
    # One line per decoded frame (this DBC sends no signal to a measurement of its own).
    assert len(lines) + n_unknown + n_failed + skipped == len(frames)
    for line in lines:
        for point in parse_lines(line):
            assert all(math.isfinite(v) for v in point.fields.values() if isinstance(v, float))
    return lines, n_unknown, n_failed


@pytest.mark.parametrize("mode", sorted(DECODERS))
@pytest.mark.parametrize("case", CASES, ids=corpus.ids(CASES))
def test_every_corpus_frame_is_decoded_counted_or_skipped(case: dict[str, Any], mode: str) -> None:
    frame = _frame(case)
    lines, unknown, failed = outcome(DECODERS[mode], [frame])
    got = "line" if lines else "unknown" if unknown else "failed" if failed else "skipped"
    assert got == case["expect"]
    if lines and math.isfinite(frame[0]):
        (point,) = parse_lines(lines[0])
        assert point.time_ns == round(frame[0] * 1_000_000) * 1000  # the frame's own time, skew and all


def test_a_bad_frame_does_not_hide_the_good_ones_around_it() -> None:
    frames = [_frame(case) for case in CASES]
    good = [f for f, case in zip(frames, CASES, strict=True) if case["expect"] == "line"]
    lines, _, _ = outcome(DECODERS["string"], frames)
    assert len(lines) == len(good)
    alone = [outcome(DECODERS["string"], [frame])[0][0] for frame in good]
    assert lines == alone


KNOWN_KEYS = sorted(DECODERS["string"].functions)
FRAMES = st.tuples(
    st.floats(min_value=0, max_value=9.2e9) | st.sampled_from([math.nan, math.inf, -math.inf, -1.0]),
    st.sampled_from(KNOWN_KEYS) | st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=31),
    st.binary(max_size=72),
)


@pytest.mark.slow  # a large property-based campaign
@settings(max_examples=1500, deadline=None)
@given(frames=st.lists(FRAMES, max_size=10), mode=st.sampled_from(sorted(DECODERS)))
def test_generated_frames_never_raise_and_always_add_up(frames: list[Frame], mode: str) -> None:
    outcome(DECODERS[mode], frames)


def test_extended_and_standard_ids_are_told_apart() -> None:
    lines, unknown, _ = outcome(DECODERS["string"], [(BASE_TS, 0x100 | EXTENDED, 0, bytes(8))])
    assert (lines, unknown) == ([], 1)

"""The can.raw encoding and the candump reader/writer, against python-can's own reader."""

from __future__ import annotations

import io

import can
import pytest

from telestack.can_gateway.decoder import BRS, ERROR, EXTENDED, FD, REMOTE, Frame
from telestack.can_gateway.errors import RawFormatError, SourceError
from telestack.can_gateway.rawframes import (
    candump_line,
    decode_raw,
    encode_raw,
    iter_candump,
    message_to_frame,
    parse_candump_line,
)
from tests.can_gateway.conftest import GARBAGE_LOG, SESSION_LOG


def test_raw_encoding_round_trips_the_recorded_session(session_frames: list[tuple[str, Frame]]) -> None:
    frames = [frame for _, frame in session_frames]
    value = encode_raw(frames)
    assert decode_raw(value) == frames
    # compact: 14 bytes per frame besides the data
    assert len(value) == 1 + sum(14 + len(f[3]) for f in frames)


def test_raw_decoding_rejects_other_formats_and_truncation() -> None:
    value = encode_raw([(1.0, 0x100, 0, bytes(8))])
    with pytest.raises(RawFormatError, match="not a telestack-can-raw/1 record"):
        decode_raw(b'{"json": true}')
    with pytest.raises(RawFormatError, match="claims 8 data bytes"):
        decode_raw(value[:-3])
    with pytest.raises(RawFormatError, match="truncated inside a frame header"):
        decode_raw(value[:5])


@pytest.mark.parametrize("path", [SESSION_LOG, GARBAGE_LOG])
def test_fast_candump_reader_matches_python_can(path: object) -> None:
    with open(str(path)) as file:
        ours = list(iter_candump(file))
    theirs = [(str(m.channel), message_to_frame(m)) for m in can.LogReader(str(path))]
    assert len(ours) == len(theirs)
    for (channel, frame), (their_channel, their_frame) in zip(ours, theirs, strict=True):
        if their_frame[2] & ERROR:  # python-can drops an error frame's channel and id
            assert frame[2] & ERROR
            continue
        assert channel == their_channel
        assert frame == their_frame


def test_candump_lines_are_read_back_identically_by_python_can() -> None:
    frames: list[Frame] = [
        (1700000000.000001, 0x7FF, 0, b"\x01\x02"),
        (1700000000.5, 0x18FF5010 | EXTENDED, 0, bytes(range(8))),
        (1700000001.25, 0x300, FD | BRS, bytes(range(24))),
        (1700000002.0, 0x123, REMOTE, b""),
    ]
    text = "".join(candump_line(f, "can1") + "\n" for f in frames)
    back = [message_to_frame(m) for m in can.CanutilsLogReader(io.StringIO(text))]
    assert back == frames
    assert [parse_candump_line(line)[2] for line in text.splitlines()] == frames  # type: ignore[index]


def test_a_malformed_candump_line_names_its_number() -> None:
    with pytest.raises(SourceError, match=r"session\.log line 2"):
        list(iter_candump(io.StringIO("(1.0) can0 100#00\nnot a frame\n"), "session.log"))

"""Raw CAN frames as bytes (the ``can.raw`` topic) and as candump ``-l`` log lines.

``can.raw`` record value, version 1: one version byte (``0x01``), then per frame, little-endian::

    int64  timestamp, µs since the epoch
    uint32 frame key: arbitration id, bit 31 set for an extended (29-bit) id
    uint8  flags: FD 0x01, BRS 0x02, ESI 0x04, REMOTE 0x08, ERROR 0x10
    uint8  data length (0..64)
    bytes  data

14 bytes of overhead per frame before Kafka's compression; the bus and vehicle are in the record's headers
(``vehicle``, ``bus``, ``encoding`` = `ENCODING`), so one record carries a batch of one bus.

>>> frames = [(1700000000.25, 0x100, 0, b"\\x01\\x02"), (1700000000.5, 0x18FF5010 | EXTENDED, FD | BRS, bytes(12))]
>>> decode_raw(encode_raw(frames)) == frames
True
>>> candump_line(frames[0], "can0")
'(1700000000.250000) can0 100#0102'
>>> parse_candump_line("(1700000000.500000) can2 18FF5010##1000000000000000000000000")
(1700000000.5, 'can2', (1700000000.5, 2566869008, 3, b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'))
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import TextIO

from telestack.can_gateway.decoder import BRS, ERROR, ESI, EXTENDED, FD, ID_MASK, REMOTE, Frame
from telestack.can_gateway.errors import RawFormatError, SourceError

__all__ = [
    "ENCODING",
    "candump_line",
    "decode_raw",
    "encode_raw",
    "iter_candump",
    "message_to_frame",
    "parse_candump_line",
]

ENCODING = "telestack-can-raw/1"
VERSION = b"\x01"
_HEADER = struct.Struct("<qIBB")
_CAN_ERR_FLAG = 0x20000000


def encode_raw(frames: Iterable[Frame]) -> bytes:
    """Frames → one ``can.raw`` record value."""
    pack = _HEADER.pack
    parts = [VERSION]
    append = parts.append
    for ts, key, flags, data in frames:
        append(pack(round(ts * 1_000_000), key, flags, len(data)))
        append(data)
    return b"".join(parts)


def decode_raw(value: bytes) -> list[Frame]:
    """One ``can.raw`` record value → frames; `RawFormatError` if it is not version 1 of the encoding."""
    if not value or value[:1] != VERSION:
        raise RawFormatError(f"not a {ENCODING} record (first byte {value[:1]!r})")
    frames: list[Frame] = []
    unpack = _HEADER.unpack_from
    size = _HEADER.size
    pos, end = 1, len(value)
    while pos < end:
        if pos + size > end:
            raise RawFormatError(f"record truncated inside a frame header at byte {pos}")
        ts_us, key, flags, length = unpack(value, pos)
        pos += size
        if length > 64 or pos + length > end:
            raise RawFormatError(f"frame at byte {pos - size} claims {length} data bytes; the record ends first")
        frames.append((ts_us / 1_000_000, key, flags, value[pos : pos + length]))
        pos += length
    return frames


def message_to_frame(message: object) -> Frame:
    """A python-can ``Message`` → a frame tuple."""
    m = message  # duck-typed: python-can is not imported here
    flags = (
        (FD if m.is_fd else 0)  # type: ignore[attr-defined]
        | (BRS if m.bitrate_switch else 0)  # type: ignore[attr-defined]
        | (ESI if m.error_state_indicator else 0)  # type: ignore[attr-defined]
        | (REMOTE if m.is_remote_frame else 0)  # type: ignore[attr-defined]
        | (ERROR if m.is_error_frame else 0)  # type: ignore[attr-defined]
    )
    key = m.arbitration_id | EXTENDED if m.is_extended_id else m.arbitration_id  # type: ignore[attr-defined]
    return (m.timestamp, key, flags, bytes(m.data))  # type: ignore[attr-defined]


# --- candump -l ------------------------------------------------------------------------------------------


def candump_line(frame: Frame, channel: str) -> str:
    """One frame as a candump ``-l`` line (what ``candump -l`` and python-can's .log writer produce)."""
    ts, key, flags, data = frame
    if flags & ERROR:
        ident = f"{_CAN_ERR_FLAG | 0x80:08X}"
    elif key & EXTENDED:
        ident = f"{key & ID_MASK:08X}"
    else:
        ident = f"{key:03X}"
    if flags & REMOTE:
        body = "R"
    elif flags & FD:
        body = f"#{(1 if flags & BRS else 0) | (2 if flags & ESI else 0):X}{data.hex().upper()}"
    else:
        body = data.hex().upper()
    return f"({ts:.6f}) {channel} {ident}#{body}"


def parse_candump_line(line: str) -> tuple[float, str, Frame] | None:
    """A candump ``-l`` line → (timestamp, channel, frame); None for a blank line. `ValueError` if malformed."""
    parts = line.split()
    if not parts:
        return None
    if len(parts) not in (3, 4) or not (parts[0].startswith("(") and parts[0].endswith(")")):
        raise ValueError(f"not a candump -l line: {line.strip()!r}")
    ts = float(parts[0][1:-1])
    ident, sep, body = parts[2].partition("#")
    if not sep:
        raise ValueError(f"no '#' in frame {parts[2]!r}")
    can_id = int(ident, 16)
    flags = 0
    if body[:1] == "#":
        fd_flags = int(body[1], 16)
        flags = FD | (BRS if fd_flags & 1 else 0) | (ESI if fd_flags & 2 else 0)
        body = body[2:]
    if body[:1] in ("R", "r"):
        flags |= REMOTE
        data = b""
    else:
        data = bytes.fromhex(body)
    if len(ident) > 3:
        if can_id & _CAN_ERR_FLAG:
            flags |= ERROR
        key = (can_id & ID_MASK) | EXTENDED
    else:
        key = can_id
    return ts, parts[1], (ts, key, flags, data)


def iter_candump(file: TextIO, name: str = "log") -> Iterator[tuple[str, Frame]]:
    """(channel, frame) for each line of a candump ``-l`` log; `SourceError` names the bad line.

    The common lines (classic or FD data frames) are parsed inline; anything else goes through
    `parse_candump_line`, which also explains what is wrong with a bad line.
    """
    fromhex = bytes.fromhex
    for line_no, line in enumerate(file, 1):
        parts = line.split()
        try:
            stamp, channel, frame = parts[0], parts[1], parts[2]
            ident, _, body = frame.partition("#")
            if len(ident) == 3 and body[:1] not in ("#", "R", "r") and stamp[0] == "(":
                yield channel, (float(stamp[1:-1]), int(ident, 16), 0, fromhex(body))
                continue
            if len(ident) == 8 and body[:1] == "#" and stamp[0] == "(":
                can_id = int(ident, 16)
                if not can_id & _CAN_ERR_FLAG and body[2:3] not in ("R", "r"):
                    fd_flags = int(body[1], 16)
                    flags = FD | (BRS if fd_flags & 1 else 0) | (ESI if fd_flags & 2 else 0)
                    yield channel, (float(stamp[1:-1]), can_id | EXTENDED, flags, fromhex(body[2:]))
                    continue
        except (ValueError, IndexError):
            pass  # parse_candump_line below says what is wrong
        try:
            parsed = parse_candump_line(line)
        except (ValueError, IndexError) as exc:
            raise SourceError(f"{name} line {line_no}: {exc}") from None
        if parsed is not None:
            yield parsed[1], parsed[2]

"""Compiled decoders against cantools on every real-world DBC file of opendbc 0.3.1 that cantools loads.

The files (``tests/data/can_gateway/opendbc-0.3.1-dbc.tar.xz``, MIT licence beside it) are the DBC directory
of PyPI's `opendbc` wheel, unchanged: many signals per frame, value tables, big- and little-endian, signed,
scaled, multiplexed and extended-id messages written by many hands. Every message of every file decodes
random frames (and all-zero and all-one ones) in each choice mode; each value must be the one
``decode_message`` returns, with the same type, and a frame cantools refuses (an unknown multiplexer value)
must be a `DecodeFailure` here too.
"""

from __future__ import annotations

import functools
import os
import random
import tarfile
import warnings
from pathlib import Path
from typing import Any

import cantools
import pytest
from cantools.database import Database

from telestack.can_gateway.decoder import EXTENDED, _integer_suffix, compile_bus, frame_key, load_databases
from telestack.can_gateway.errors import DatabaseError, DecodeFailure
from telestack.core.lineproto import UInt
from tests.can_gateway.conftest import DATA
from tests.can_gateway.test_decoder import _assert_same, _cantools, _fields

pytestmark = pytest.mark.slow

ARCHIVE = DATA / "opendbc-0.3.1-dbc.tar.xz"
# Random payloads per message and mode, besides all zeros and all ones, and more for multiplexed messages so that
# most branches are taken: a sample in `make test`, the full campaign with TELESTACK_OPENDBC_SIZE=full.
FULL = os.environ.get("TELESTACK_OPENDBC_SIZE") == "full"
FRAMES_PER_MESSAGE = 30 if FULL else 8
MUX_FRAMES_PER_MESSAGE = 120 if FULL else 32


with tarfile.open(ARCHIVE) as _archive:
    PATHS = sorted(name for name in _archive.getnames() if name.endswith(".dbc"))


@pytest.fixture(scope="module")
def opendbc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("opendbc")
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(directory, filter="data")
    return directory


@functools.cache  # parsing each file 4 times (3 modes, the archive check) was most of this module's 162 s: now 27 s
def _load(path: Path) -> tuple[Database | None, bool]:
    """(the file as cantools loads it, strictly?): strict if it can, else not; None when cantools refuses it.

    Cached per process: decoding reads the database and never changes it."""
    for strict in (True, False):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                db = cantools.database.load_file(str(path), strict=strict)
        except Exception:  # cantools refuses the file: not ours to decode
            continue
        assert isinstance(db, Database)
        return db, strict
    return None, False


def test_the_archive_holds_what_it_says(opendbc: Path) -> None:
    assert ARCHIVE.stat().st_size < 500_000 and len(PATHS) == 115
    databases = [db for db, _ in (_load(opendbc / path) for path in PATHS) if db is not None]
    assert len(databases) >= 90  # 94 of its 115 files load with cantools 45
    messages = [m for db in databases for m in db.messages]
    assert sum(m.is_multiplexed() for m in messages) >= 20
    assert sum(m.is_extended_frame for m in messages) >= 100
    assert sum(1 for m in messages for s in m.signals if s.byte_order == "big_endian") >= 1000


@pytest.mark.parametrize("mode", ["string", "number", "both"])
@pytest.mark.parametrize("path", PATHS, ids=lambda path: Path(path).stem)
def test_every_message_decodes_exactly_as_cantools(opendbc: Path, path: str, mode: str) -> None:
    db, strict = _load(opendbc / path)
    if db is None:  # what cantools refuses, the gateway refuses at load time with a message naming the file
        with pytest.raises(DatabaseError, match=Path(path).name):
            load_databases([opendbc / path])
        return
    decoder = compile_bus([db], vehicle="v", bus="b", choices=mode)  # type: ignore[arg-type]
    rng = random.Random(path)
    compared = refused = overlapping = 0
    for message in db.messages:
        key = frame_key(message.frame_id, message.is_extended_frame)
        count = MUX_FRAMES_PER_MESSAGE if message.is_multiplexed() else FRAMES_PER_MESSAGE
        payloads = [bytes(message.length), b"\xff" * message.length]
        payloads += [rng.randbytes(message.length) for _ in range(count)]
        for payload in payloads:
            try:
                expected: dict[str, Any] | None = _cantools(db, key, payload, decode_choices=mode != "number")
            except cantools.database.DecodeError as exc:
                if str(exc) == "unpacking failed":
                    # Overlapping signals, which only a non-strict load lets in (the gateway loads strictly
                    # and refuses the file): bitstruct cannot unpack them, there is nothing to compare with.
                    assert not strict, f"{message.name}: {exc}"
                    overlapping += 1
                    continue
                expected = None
            if expected is None:
                with pytest.raises(DecodeFailure):
                    decoder.decode_line(key, payload, 1.5)
                refused += 1
                continue
            fields, points = _fields(decoder.decode_line(key, payload, 1.5) or "")
            for name, value in fields.items():  # unsigned 64-bit signals are uint64 fields: one type per field
                if type(value) is UInt:
                    assert _integer_suffix(message.get_signal_by_name(name)) == "u", f"{message.name}.{name}"
                    fields[name] = int(value)
            _assert_same(db, key, expected, fields, mode)
            if mode == "both":
                numbers = _cantools(db, key, payload, decode_choices=False)
                for name, value in fields.items():
                    if not name.endswith("_label"):
                        assert value == numbers[name] and type(value) is type(numbers[name]), f"{message.name}.{name}"
            if points:
                assert points[0].time_ns == 1_500_000_000 and points[0].measurement == message.name
                assert bool(key & EXTENDED) == message.is_extended_frame
            compared += len(expected)
    assert compared + refused + overlapping > 0 or not db.messages  # some generated files only import others

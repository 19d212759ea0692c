"""InfluxDB's own line-protocol parser (the `lineproto-oracle` binary) and what its answers mean for us.

`Oracle.ask` sends many inputs at once and returns one `Answer` per input. `expected` turns an answer into
what `telestack.core.lineproto` must return for the same input: the same points, or a refusal. It also
applies the rules of InfluxDB's storage, which drops or mangles some points its parser accepts; for those we
must refuse (a DLQ entry with a reason beats a point that is silently not stored):

- a field named ``time`` is skipped by the shard (tsdb/shard.go ``validateSeriesAndFields``, field_validator.go);
- an empty field key (``m \\t=1``): `Point.Fields()` skips it while storage writes an unnamed field;
- the same field key twice with different types: the shard drops the point (field type conflict); with the
  same type the last value is stored, as `Point.Fields()` returns;
- a string field over 1 MiB (tsdb ``MaxFieldValueLength``): the shard drops the point;
- a value the scanner let through but the field iterator cannot convert (the point's ``error``);
- text that is not UTF-8 (a string value such as ``"x"é`` loses its last byte, cut inside ``é``).

Tag keys ``time``, ``_measurement``, ``_field``, duplicate tag keys and series keys over 65,535 bytes are
refused by the 2.7.12 parser itself, so the oracle already answers those.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from telestack.core.lineproto import FieldValue, Point, UInt

__all__ = ["Answer", "Oracle", "expected", "same_points"]

MAX_STRING_FIELD_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class Answer:
    points: list[dict[str, object]]
    error: str | None


class Oracle:
    """A running `lineproto-oracle`; inputs go in as bytes, answers come back in order."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def ask(self, texts: Sequence[bytes | str], precision: str = "ns") -> list[Answer]:
        blobs = [t.encode("utf-8") if isinstance(t, str) else t for t in texts]
        proc = subprocess.Popen(
            [str(self.binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdin is not None and proc.stdout is not None

        def feed() -> None:
            assert proc.stdin is not None
            try:
                for blob in blobs:
                    proc.stdin.write(b"%s %d\n" % (precision.encode(), len(blob)))
                    proc.stdin.write(blob)
            finally:
                proc.stdin.close()

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        answers = []
        for line in proc.stdout:
            doc = json.loads(line)
            answers.append(Answer(doc["points"], doc["error"]))
        writer.join(timeout=60)
        proc.wait(timeout=60)
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        proc.stderr.close()
        proc.stdout.close()
        if proc.returncode != 0 or len(answers) != len(blobs):
            raise RuntimeError(f"lineproto-oracle failed ({proc.returncode}): {stderr.decode(errors='replace')}")
        return answers


class NotUtf8(ValueError):
    """InfluxDB's parser made bytes that are not UTF-8 (e.g. a string value cut inside a character)."""


def _text(value: object) -> str:
    if isinstance(value, dict):  # {"b64": ...}
        raise NotUtf8(f"not UTF-8: {base64.b64decode(value['b64'])!r}")
    assert isinstance(value, str)
    return value


def _value(kind: str, raw: str) -> FieldValue:
    if kind == "float":
        return float(raw)
    if kind == "integer":
        return int(raw)
    if kind == "unsigned":
        return UInt(int(raw))
    if kind == "boolean":
        return raw == "true"
    if kind == "string":
        return raw
    raise ValueError(f"field of type {kind}")


def _stored_point(doc: dict[str, object]) -> Point | str:
    """The point InfluxDB stores for one parsed point, or why it does not store it as parsed."""
    try:
        return _checked_point(doc)
    except NotUtf8 as exc:
        return str(exc)


def _checked_point(doc: dict[str, object]) -> Point | str:
    if doc["error"] is not None:
        return f"value does not convert: {doc['error']}"
    fields: dict[str, FieldValue] = {}
    for key_raw, kind, raw in doc["fields"]:  # type: ignore[attr-defined]
        key = _text(key_raw)
        if key == "":
            return "empty field key"
        if key == "time":
            return "field key 'time' is dropped by storage"
        if kind == "empty":
            return f"field {key!r} has no value (Point.Fields() skips it)"
        value = _value(kind, _text(raw))
        if isinstance(value, str) and len(value.encode("utf-8")) > MAX_STRING_FIELD_BYTES:
            return "string field over 1 MiB is dropped by storage"
        if key in fields and _kind(fields[key]) != _kind(value):
            return f"field {key!r} twice with different types"
        fields[key] = value
    tags = {_text(k): _text(v) for k, v in doc["tags"]}  # type: ignore[attr-defined]
    time = doc["time"]
    return Point(_text(doc["measurement"]), tags, fields, None if time is None else int(str(time)))


def expected(answer: Answer) -> tuple[list[Point | str], str | None]:
    """(each parsed point or why we must refuse it, the parser's error for the whole input or None)."""
    return [_stored_point(doc) for doc in answer.points], answer.error


def _kind(value: FieldValue) -> str:
    return type(value).__name__


def _same_value(a: FieldValue, b: FieldValue) -> bool:
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    return a == b


def same_points(ours: Sequence[Point], theirs: Sequence[Point]) -> bool:
    if len(ours) != len(theirs):
        return False
    for a, b in zip(ours, theirs, strict=True):
        if (a.measurement, a.tags, a.time_ns) != (b.measurement, b.tags, b.time_ns):
            return False
        if a.fields.keys() != b.fields.keys():
            return False
        if not all(_same_value(a.fields[k], b.fields[k]) for k in a.fields):
            return False
    return True

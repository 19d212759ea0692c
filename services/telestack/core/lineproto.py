"""InfluxDB line protocol, read and written exactly as InfluxDB 2.7.12 reads it.

    measurement[,tag=value...] field=value[,field=value...] [timestamp_ns]

`parse_lines` is a port of the parser behind InfluxDB's ``/api/v2/write`` (``models.ParsePointsWithPrecision``
in ``github.com/influxdata/influxdb/v2/models``), quirks included, so a line means here what it means there.
``tests/core/test_lineproto_oracle.py`` holds it to that against InfluxDB's own parser. Its rules, in short:

- Lines end at a newline, except inside a string field value or right after a backslash (``\\`` joins lines).
  Leading spaces, tabs and NULs are skipped; ``#`` then starts a comment; ``\\r`` is an ordinary character.
- In the measurement and tags, a backslash escapes the character after it, whatever it is: a ``,`` ``=`` or
  space right after any backslash is part of the name. Reading a name removes a backslash before ``,``, space,
  ``=`` (and ``"`` in measurements and field keys); every other backslash is kept.
- One or more spaces (tabs and NULs too, before the fields and the timestamp) separate the sections; trailing
  spaces are allowed.
- Field values: float (``1.5``, ``-1e3``, ``.5``), ``3i`` (int64), ``3u`` (uint64), ``true``/``t``/``T``/``True``/
  ``TRUE`` (and ``false`` alike), or a double-quoted string in which only ``\\\\`` and ``\\"`` are escapes.
- Timestamps are int64 nanoseconds between ``MIN_TIME_NS`` and ``MAX_TIME_NS`` (InfluxDB keeps the two lowest
  and the highest int64 for itself); none means "now" at the server (`Point.time_ns` None).
- Refused by InfluxDB's parser: tag keys ``time``, ``_measurement``, ``_field``; duplicate tag keys; a series key
  (measurement and tags, as written) over 65,535 bytes, or over it with ``4 + field key`` added.

Refused here although InfluxDB's parser lets them through, because its storage would not keep them as
written: a field named ``time`` (dropped), an empty field key, one field key twice with different types
(the point is dropped), a string value over 1 MiB (dropped). With the same type twice, the last value wins,
as in InfluxDB.

`format_point` writes a point so that InfluxDB reads back exactly that point, or raises `LineProtocolError`
saying why it cannot (a name ending in a backslash, a newline in a name, NaN, ...). Integers beyond int64 that
fit uint64 are written as ``u``.

>>> point = Point("fermenter", {"device": "f1"}, {"temperature": 18.5, "relay": True}, 1_700_000_000_000_000_000)
>>> line = format_point(point)
>>> line
'fermenter,device=f1 relay=true,temperature=18.5 1700000000000000000'
>>> parse_line(line) == point
True
>>> format_point(Point("my meas", {"a=b": "c,d"}, {"msg": 'say "hi"'}))
'my\\\\ meas,a\\\\=b=c\\\\,d msg="say \\\\"hi\\\\""'
>>> [p.fields for p in parse_lines('# don"t panic\\ncpu value=1 1\\ncpu value=2 2\\n')]
[{'value': 1.0}, {'value': 2.0}]
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from telestack.core.errors import LineProtocolError

__all__ = [
    "MAX_TIME_NS",
    "MIN_TIME_NS",
    "FieldValue",
    "Point",
    "UInt",
    "format_lines",
    "format_point",
    "iter_lines",
    "parse_line",
    "parse_lines",
]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
MIN_TIME_NS = INT64_MIN + 2  # models.MinNanoTime
MAX_TIME_NS = INT64_MAX - 1  # models.MaxNanoTime
MAX_KEY_BYTES = 65_535  # models.MaxKeyLength: series key, and series key + 4 + field key
MAX_STRING_BYTES = 1_048_576  # tsdb.MaxFieldValueLength: longer string values are dropped by storage
_NAMES_KEPT = 10_000  # bound of each cache of names and series keys below
_RESERVED_TAG_KEYS = frozenset(("_measurement", "_field", "time", "\x00"))


class UInt(int):
    """An unsigned 64-bit integer field (``42u``); a plain `int` is written as a signed ``42i``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"UInt({int(self)})"


FieldValue = float | int | UInt | str | bool


@dataclass(slots=True)
class Point:
    """One line of line protocol. `time_ns` is nanoseconds since the epoch, or None (server time)."""

    measurement: str
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FieldValue] = field(default_factory=dict)
    time_ns: int | None = None

    def to_line(self) -> str:
        return format_point(self)


# --- parsing ---------------------------------------------------------------------------------------------
#
# Names of the Go functions ported are given so the two can be read side by side. Indexes are on code points,
# not bytes: every character the parser looks at is ASCII, and UTF-8 never puts an ASCII byte inside a longer
# character, so each decision is the same; only lengths (the 65,535-byte limits) are counted in bytes.

_WHITESPACE = " \t\x00"  # skipWhitespace
_BOOLEANS = {
    "t": True, "T": True, "true": True, "True": True, "TRUE": True,
    "f": False, "F": False, "false": False, "False": False, "FALSE": False,
}  # fmt: skip
_INT = re.compile(r"-?[0-9]+")
_UINT = re.compile(r"[0-9]+")
_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NUMBER = re.compile(rf"(-?[0-9]+)i|([0-9]+)u|({_FLOAT.pattern})").fullmatch
_TIMESTAMP = re.compile(r"-?[0-9]+")
_NUMBER_START = frozenset("0123456789.-Nn")

_LINE_STOP = re.compile(r'[\\\n "=,]')  # what scanLine looks at
_KEY_END = re.compile(r"(?<!\\)[, ]")  # scanMeasurement: a comma or space not right after a backslash
_TAG_STOP = re.compile(r"(?<!\\)[ ,=]")  # scanTagsKey, scanTagsValue
_FIELDS_STOP = re.compile(r'[\\"=, ]')  # scanFields
_VALUE_END = re.compile(r"[, ]")  # scanNumber, scanBoolean
_KEY_EQUALS = re.compile(r"(?<!\\)=")  # scanTo(fields, i, '=')
_FIELD_VALUE_STOP = re.compile(r'[\\",]')  # scanFieldValue
_STRING_ESCAPE = re.compile(r'\\([\\"])')  # unescapeStringField
_PLAIN = re.compile(r'[\\"\t\x00\n]')  # a line without these takes the fast path

# The usual line with escapes and string fields: single spaces; in names, a backslash only right before a space,
# comma or equals sign (or quote, in field keys) that it escapes, never before another backslash; no quote in
# the measurement or tags; no tab or NUL in field keys. For such a line every scanner of InfluxDB's parser
# (scanLine, scanKey, scanFields, the field iterator) finds the same separators, so a regular expression
# finds them too. Anything else takes the full port.
_MEASUREMENT = r'(?:[^\\ ,\n"#\t\x00]|\\[ ,=])(?:[^\\ ,\n"]|\\[ ,=])*'
_TAG_PART = r'(?:[^\\ ,=\n"]|\\[ ,=])+'
_FIELD_KEY = r'(?:[^\\ ,="\n\t\x00]|\\[ ,="])+'
_FIELD_VALUE = r'"(?:[^\\"]|\\.)*"|[^\\ ,"=\n]+'
_USUAL = re.compile(
    rf"({_MEASUREMENT}(?:,{_TAG_PART}={_TAG_PART})*)"
    rf" ({_FIELD_KEY}=(?:{_FIELD_VALUE})(?:,{_FIELD_KEY}=(?:{_FIELD_VALUE}))*)"
    r"(?: (-?[0-9]+))?",
    re.S,
)
_USUAL_FIELD = re.compile(rf"({_FIELD_KEY})=({_FIELD_VALUE})", re.S)
_KEY_SEPARATOR = re.compile(r"(?<!\\)[,=]")
_TAGS_START = re.compile(r"(?<!\\),")


def _bad(reason: str) -> LineProtocolError:
    return LineProtocolError(reason)


def _scan_line(text: str, i: int) -> int:
    """scanLine: the end of the line starting at `i` (a newline, or the end of `text`)."""
    n = len(text)
    quoted = fields = False
    equals = commas = 0
    search = _LINE_STOP.search
    while True:
        match = search(text, i)
        if match is None:
            return n
        i = match.start()
        char = text[i]
        if char == "\\":
            i += 2 if i + 2 < n else 1
            continue
        if char == " ":
            fields = True
        elif fields:
            if char == "=" and not quoted:
                equals += 1
            elif char == "," and not quoted:
                commas += 1
            elif char == '"' and equals > commas:
                quoted = not quoted
        if char == "\n" and not quoted:
            return i
        i += 1


def _blocks(text: str) -> Iterator[tuple[int, str, re.Match[str] | None]]:
    """ParsePointsWithPrecision's loop: (line number, line, its `_USUAL` match if taken) for each line that is
    not blank or a comment."""
    n = len(text)
    pos = 0
    line_no = 1
    find = text.find
    usual = _USUAL.fullmatch
    while pos < n:
        end = find("\n", pos)
        if end < 0:
            end = n
        match = None
        if find('"', pos, end) >= 0 or (end > pos and text[end - 1] == "\\"):
            match = usual(text, pos, end)  # a usual line ends at its newline; any other: scan it
            if match is None:
                end = _scan_line(text, pos)
        block = text[pos:end]
        first_no = line_no
        line_no += 1 + block.count("\n")
        pos = end + 1
        line = block.lstrip(_WHITESPACE)
        if not line or line[0] == "#":
            continue
        if line[-1] == "\n":
            line = line[:-1]
        yield first_no, line, match


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _number(raw: str, key: str) -> FieldValue:
    """scanNumber and the field iterator's conversion, for a value that starts like a number."""
    match = _NUMBER(raw)
    if match is not None:
        kind = match.lastindex
        if kind == 1:
            value = int(match[1])
            if INT64_MIN <= value <= INT64_MAX:
                return value
        elif kind == 2:
            value = int(match[2])
            if value <= UINT64_MAX:
                return UInt(value)
        else:
            number = float(raw)
            if number != math.inf and number != -math.inf:
                return number
            raise _bad(f"field {key!r}: {raw} is out of the float64 range")
        raise _bad(f"field {key!r}: {raw} is out of the {'int64' if kind == 1 else 'uint64'} range")
    if raw[-1] == "i":
        raise _bad(f"field {key!r}: invalid integer {raw!r}")
    if raw[-1] == "u":
        raise _bad(f"field {key!r}: invalid unsigned integer {raw!r}")
    raise _bad(f"field {key!r}: invalid number {raw!r}")


def _boolean(raw: str, key: str) -> bool:
    value = _BOOLEANS.get(raw)
    if value is None:
        raise _bad(f"field {key!r}: invalid value {raw!r}")
    return value


def _check_time(raw: str) -> int:
    if not (raw.isdigit() and raw.isascii()) and not _TIMESTAMP.fullmatch(raw):
        raise _bad(f"invalid timestamp {raw!r}")
    value = int(raw)
    if not MIN_TIME_NS <= value <= MAX_TIME_NS:
        raise _bad(f"timestamp {raw} is outside InfluxDB's range {MIN_TIME_NS} to {MAX_TIME_NS}")
    return value


def _add_field(fields: dict[str, FieldValue], key: str, value: FieldValue) -> None:
    """Storage's rules for what the parser accepts: see the module docstring."""
    if key == "time":
        raise _bad("field key 'time' is dropped by InfluxDB's storage")
    if not key:
        raise _bad("empty field key")
    old = fields.get(key)
    if old is not None and type(old) is not type(value):
        raise _bad(f"field {key!r} twice with different types (InfluxDB drops the point)")
    if isinstance(value, str) and len(value) * 4 > MAX_STRING_BYTES and _utf8_len(value) > MAX_STRING_BYTES:
        raise _bad(f"field {key!r}: string longer than {MAX_STRING_BYTES} bytes (InfluxDB drops the point)")
    fields[key] = value


def _parse_plain(line: str) -> Point | None:
    """The common case: no backslash, quote, tab, NUL or newline, single spaces. None: take the full path."""
    sections = line.split(" ")
    count = len(sections)
    if count == 3:
        stamp = sections[2]
    elif count == 2:
        stamp = ""
    else:
        return None
    key, field_set = sections[0], sections[1]
    if not key or not field_set:
        return None
    series = _SERIES.get(key)
    if series is not None:
        measurement, tags = series[0], series[1].copy()
    else:
        measurement, tags = _plain_series(key)
    fields: dict[str, FieldValue] = {}
    for pair in field_set.split(","):
        field_key, sep, raw = pair.partition("=")
        if not sep or not field_key or not raw:
            raise _bad(f"invalid field {pair!r}: key=value with neither empty")
        value = _number(raw, field_key) if raw[0] in _NUMBER_START else _boolean(raw, field_key)
        if field_key in fields or field_key == "time":
            _add_field(fields, field_key, value)
        else:
            fields[field_key] = value
    if len(line) * 4 + 4 > MAX_KEY_BYTES:
        _check_key_lengths(key, (pair.partition("=")[0] for pair in field_set.split(",")))
    return Point(measurement, tags, fields, _check_time(stamp) if stamp else None)


# Series keys (measurement and tags, as written) already read, with what they hold: a line repeats the series
# of the lines before it far more often than not. Emptied when it holds _NAMES_KEPT.
_SERIES: dict[str, tuple[str, dict[str, str]]] = {}


def _remember_series(key: str, measurement: str, tags: dict[str, str]) -> tuple[str, dict[str, str]]:
    if len(_SERIES) >= _NAMES_KEPT:
        _SERIES.clear()
    _SERIES[key] = (measurement, tags.copy())
    return measurement, tags


def _plain_series(key: str) -> tuple[str, dict[str, str]]:
    measurement, *pairs = key.split(",")
    if not measurement:
        raise _bad("missing measurement")
    tags: dict[str, str] = {}
    for pair in pairs:
        tag_key, sep, tag_value = pair.partition("=")
        if not sep or not tag_key or not tag_value:
            raise _bad(f"invalid tag {pair!r}: key=value with neither empty")
        if "=" in tag_value and tag_value.find("=", 1) > 0:
            raise _bad(f"invalid tag {pair!r}: '=' in the value must be escaped")
        if tag_key in _RESERVED_TAG_KEYS:
            raise _bad(f"cannot use reserved tag key {tag_key!r}")
        tags[tag_key] = tag_value
    if len(tags) != len(pairs):
        raise _bad("duplicate tag keys")
    return _remember_series(key, measurement, tags)


def _check_key_lengths(key: str, field_keys: Iterable[str]) -> None:
    key_bytes = _utf8_len(key)
    if key_bytes > MAX_KEY_BYTES:
        raise _bad(f"series key of {key_bytes} bytes exceeds {MAX_KEY_BYTES}")
    for field_key in field_keys:
        size = key_bytes + 4 + _utf8_len(field_key)
        if size > MAX_KEY_BYTES:
            raise _bad(f"series key with field {field_key!r} is {size} bytes, over {MAX_KEY_BYTES}")


def _unescape(text: str, chars: str) -> str:
    """Remove each backslash that is right before one of `chars` (escape.Unescape, unescapeTag)."""
    if "\\" not in text:
        return text
    for char in chars:
        text = text.replace("\\" + char, char)
    return text


def _skip_whitespace(buf: str, i: int) -> int:
    n = len(buf)
    while i < n and buf[i] in _WHITESPACE:
        i += 1
    return i


def _scan_key(buf: str) -> tuple[int, str, str, dict[str, str]]:
    """scanKey: (end, raw key, measurement, tags)."""
    start = _skip_whitespace(buf, 0)
    n = len(buf)
    if start >= n or buf[start] == ",":
        raise _bad("missing measurement")
    match = _KEY_END.search(buf, start + 1)
    if match is None:
        raise _bad("missing fields")
    i = match.start()
    measurement = _unescape(buf[start:i], ', "=')
    tags: dict[str, str] = {}
    if buf[i] == ",":
        i += 1
        while True:
            if i >= n or buf[i] in " ,=":
                raise _bad("missing tag key")
            match = _TAG_STOP.search(buf, i + 1)
            if match is None or buf[match.start()] != "=":
                raise _bad("missing tag value")
            raw_key = buf[i : match.start()]
            i = match.start() + 1
            if i >= n or buf[i] in ", ":
                raise _bad("missing tag value")
            match = _TAG_STOP.search(buf, i + 1)
            if match is None:
                raise _bad("missing fields")
            stop = buf[match.start()]
            if stop == "=":
                raise _bad("invalid tag format: '=' in a tag value must be escaped")
            if raw_key in _RESERVED_TAG_KEYS:
                raise _bad(f"cannot use reserved tag key {raw_key!r}")
            tag_key = _unescape(raw_key, ", =")
            if tag_key in tags:  # raw keys are equal exactly when their unescaped forms are
                raise _bad("duplicate tags")
            tags[tag_key] = _unescape(buf[i : match.start()], ", =")
            i = match.start()
            if stop == " ":
                break
            i += 1
    key = buf[start:i]
    if len(key) * 4 > MAX_KEY_BYTES and _utf8_len(key) > MAX_KEY_BYTES:
        raise _bad(f"max key length exceeded: {_utf8_len(key)} > {MAX_KEY_BYTES}")
    return i, key, measurement, tags


def _scan_fields(buf: str, i: int) -> tuple[int, str]:
    """scanFields: (end, raw field set); validates numbers and booleans as InfluxDB's scanner does."""
    start = i = _skip_whitespace(buf, i)
    n = len(buf)
    quoted = False
    equals = commas = 0
    search = _FIELDS_STOP.search
    while True:
        match = search(buf, i)
        if match is None:
            i = n
            break
        i = match.start()
        char = buf[i]
        if char == "\\":
            if i + 1 < n:
                i += 2
                continue
            i += 1
            continue
        if char == '"' and equals > commas:
            quoted = not quoted
            i += 1
            continue
        if char == "=" and not quoted:
            equals += 1
            before = buf[i - 1]
            if (before == " " or before == ",") and buf[i - 2] != "\\":
                raise _bad("missing field key")
            if i + 1 >= n or buf[i + 1] in ", ":
                raise _bad("missing field value")
            after = buf[i + 1]
            if after != '"':
                end = _VALUE_END.search(buf, i + 1)
                j = n if end is None else end.start()
                raw = buf[i + 1 : j]
                if after in _NUMBER_START:
                    _number(raw, "")
                else:
                    _boolean(raw, "")
                i = j
                continue
        elif char == "," and not quoted:
            commas += 1
        elif char == " " and not quoted:
            break
        i += 1
    if quoted:
        raise _bad("unbalanced quotes")
    if equals == 0 or commas != equals - 1:
        raise _bad("invalid field format")
    return i, buf[start:i]


def _field_value_end(fields: str, i: int) -> int:
    """scanFieldValue."""
    n = len(fields)
    quoted = False
    search = _FIELD_VALUE_STOP.search
    while True:
        match = search(fields, i)
        if match is None:
            return n
        i = match.start()
        char = fields[i]
        if char == "\\":
            i += 2 if i + 1 < n and fields[i + 1] in '"\\' else 1
        elif char == '"':
            quoted = not quoted
            i += 1
        elif quoted:
            i += 1
        else:
            return i


def _go_float(raw: str) -> float:
    """strconv.ParseFloat for what can reach it here (the scanner has vetted most values)."""
    if _FLOAT.fullmatch(raw):
        number = float(raw)
        if math.isinf(number):
            raise _bad(f"{raw} is out of the float64 range")
        return number
    raise _bad(f"invalid number {raw!r}")


def _typed(raw: str, key: str) -> FieldValue:
    """The field iterator's Next and value methods (point.Fields)."""
    if not raw:
        raise _bad(f"field {key!r} has no value")
    head = raw[0]
    if head == '"':
        if len(raw) < 2:
            raise _bad(f"field {key!r}: unterminated string")
        if not raw[-1].isascii():  # InfluxDB drops the last byte, quote or not: here, inside a character
            raise _bad(f"field {key!r}: text after the closing quote of {raw!r}")
        return _STRING_ESCAPE.sub(r"\1", raw[1:-1]) if "\\" in raw else raw[1:-1]
    if head in "0123456789-.nNiIu":
        last = raw[-1]
        if last in "iu":
            body = raw[:-1]
            match = re.fullmatch(r"[+-]?[0-9]+" if last == "i" else r"[0-9]+", body)
            value = int(body) if match else -1
            if last == "i" and match and INT64_MIN <= value <= INT64_MAX:
                return value
            if last == "u" and match and value <= UINT64_MAX:
                return UInt(value)
            raise _bad(f"field {key!r}: invalid integer {raw!r}")
        return _go_float(raw)
    return _boolean(raw, key)


def _parse_full(buf: str) -> Point:
    """parsePoint, for any line."""
    i, key, measurement, tags = _scan_key(buf)
    i, field_set = _scan_fields(buf, i)
    fields: dict[str, FieldValue] = {}
    raw_keys = []
    pos, n = 0, len(field_set)
    while pos < n:
        match = _KEY_EQUALS.search(field_set, pos)  # the lookbehind sees field_set[pos - 1], as scanTo does
        equals = n if match is None else match.start()
        if equals > n - 2:
            raise _bad(f"invalid value: field-key={field_set[pos:equals]}")
        raw_key = field_set[pos:equals]
        end = _field_value_end(field_set, equals + 1)
        raw_keys.append(raw_key)
        key_text = _unescape(raw_key, ', "=')
        _add_field(fields, key_text, _typed(field_set[equals + 1 : end], key_text))
        pos = end + 1
    if len(key) * 4 + 4 + max(map(len, raw_keys)) * 4 > MAX_KEY_BYTES:
        _check_key_lengths(key, raw_keys)
    # scanTime
    n = len(buf)
    start = j = _skip_whitespace(buf, i)
    while j < n and buf[j] not in "\n ":
        if not ("0" <= buf[j] <= "9" or (j == start and buf[j] == "-")):
            raise _bad("bad timestamp")
        j += 1
    if j == start:
        return Point(measurement, tags, fields, None)
    time_ns = _check_time(buf[start:j])
    if buf[j:].strip(" "):
        raise _bad("unexpected text after the timestamp")
    return Point(measurement, tags, fields, time_ns)


def _parse_usual(match: re.Match[str]) -> Point:
    key, field_set, stamp = match.groups()
    series = _SERIES.get(key)
    if series is not None:
        measurement, tags = series[0], series[1].copy()
    else:
        measurement, tags = _usual_series(key)
    fields: dict[str, FieldValue] = {}
    pairs = _USUAL_FIELD.findall(field_set)
    for raw_key, raw in pairs:
        field_key = _unescape(raw_key, ', "=') if "\\" in raw_key else raw_key
        head = raw[0]
        if head == '"':
            text = _STRING_ESCAPE.sub(r"\1", raw[1:-1]) if "\\" in raw else raw[1:-1]
            if len(text) * 4 > MAX_STRING_BYTES or field_key in fields or field_key == "time":
                _add_field(fields, field_key, text)
                continue
            value: FieldValue = text
        else:
            value = _number(raw, field_key) if head in _NUMBER_START else _boolean(raw, field_key)
            if field_key in fields or field_key == "time":
                _add_field(fields, field_key, value)
                continue
        fields[field_key] = value
    if len(key) * 4 + 4 + len(field_set) * 4 > MAX_KEY_BYTES:
        _check_key_lengths(key, (raw_key for raw_key, _ in pairs))
    return Point(measurement, tags, fields, None if stamp is None else _check_time(stamp))


def _usual_series(key: str) -> tuple[str, dict[str, str]]:
    first_comma = _TAGS_START.search(key) if "," in key else None
    tags: dict[str, str] = {}
    if first_comma is None:
        measurement = _unescape(key, ', "=')
    else:
        measurement = key[: first_comma.start()]
        if "\\" in measurement:
            measurement = _unescape(measurement, ', "=')
        parts = _KEY_SEPARATOR.split(key[first_comma.end() :])
        for raw_key, raw_value in zip(parts[0::2], parts[1::2], strict=True):
            if raw_key in _RESERVED_TAG_KEYS:
                raise _bad(f"cannot use reserved tag key {raw_key!r}")
            tags[_unescape(raw_key, ", =") if "\\" in raw_key else raw_key] = (
                _unescape(raw_value, ", =") if "\\" in raw_value else raw_value
            )
        if len(tags) * 2 != len(parts):
            raise _bad("duplicate tags")
    return _remember_series(key, measurement, tags)


def _parse(line: str, match: re.Match[str] | None = None) -> Point:
    if match is not None:
        return _parse_usual(match)
    if not _PLAIN.search(line) and line and line[0] != " ":
        point = _parse_plain(line)
        if point is not None:
            return point
    match = _USUAL.fullmatch(line)
    if match is not None:
        return _parse_usual(match)
    return _parse_full(line)


def parse_line(line: str, line_no: int | None = None) -> Point:
    """Parse one line of line protocol (as `iter_lines` yields it) into a `Point`."""
    try:
        return _parse(line)
    except LineProtocolError as exc:
        if line_no is not None and exc.line_no is None:
            raise LineProtocolError(exc.reason, line_no=line_no, line=line) from None
        raise


def iter_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based number of its first line, line) for each line that is not blank or a comment.

    Lines are split where InfluxDB splits them: newlines inside a string field value, or right after a
    backslash, stay inside their line.
    """
    for line_no, line, _ in _lines(text):
        yield line_no, line


def _lines(text: str) -> Iterator[tuple[int, str, re.Match[str] | None]]:
    if '"' not in text and "\\" not in text:
        for line_no, raw in enumerate(text.split("\n"), 1):
            line = raw.lstrip(_WHITESPACE)
            if line and line[0] != "#":
                yield line_no, line, None
        return
    yield from _blocks(text)


def parse_lines(text: str) -> list[Point]:
    """Parse a block of line protocol; the first bad line raises `LineProtocolError` naming its number."""
    points = []
    for line_no, line, match in _lines(text):
        try:
            points.append(_parse(line, match))
        except LineProtocolError as exc:
            raise LineProtocolError(exc.reason, line_no=line_no, line=line) from None
    return points


# --- serializing -----------------------------------------------------------------------------------------

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_ESCAPE_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_ESCAPE_FIELD_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", '"': r"\""})
_ESCAPE_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})
_BACKSLASH_BEFORE_QUOTE_OR_EQUALS = re.compile(r'(?<=\\)(["=])')
_NAME_CHECK = re.compile(r"[\\\n]")


def _name(text: str, what: str, table: dict[int, str]) -> str:
    if not text:
        raise LineProtocolError(f"{what} must not be empty")
    if _NAME_CHECK.search(text):
        if "\n" in text:
            raise LineProtocolError(f"{what} {text!r} contains a newline, which would end the line")
        if text[-1] == "\\":
            raise LineProtocolError(
                f"{what} {text!r} ends with a backslash, which InfluxDB reads as escaping the separator after it"
            )
    return text.translate(table)


def _format_field_value(key: str, value: FieldValue) -> str:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, UInt):
        if not 0 <= value <= UINT64_MAX:
            raise LineProtocolError(f"field {key!r}: {int(value)} is outside the uint64 range")
        return f"{int(value)}u"
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return f"{value}i"
        if INT64_MAX < value <= UINT64_MAX:
            return f"{value}u"
        raise LineProtocolError(f"field {key!r}: {value} is outside the int64 and uint64 ranges")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"field {key!r}: {value} is not finite; InfluxDB stores no NaN or Inf")
        return repr(value)
    if isinstance(value, str):
        if len(value) * 4 > MAX_STRING_BYTES and _utf8_len(value) > MAX_STRING_BYTES:
            raise LineProtocolError(f"field {key!r}: string longer than {MAX_STRING_BYTES} bytes (InfluxDB drops it)")
        return f'"{value.translate(_ESCAPE_STRING)}"'
    raise LineProtocolError(f"field {key!r}: unsupported type {type(value).__name__}")


# Escaped names, remembered: telemetry repeats the same few names in every line. Only names that can be
# written are kept; each dict is emptied when it holds _NAMES_KEPT (a bound on memory, not an LRU).
_MEASUREMENTS: dict[str, str] = {}
_TAG_TEXTS: dict[str, str] = {}
_FIELD_KEYS: dict[str, str] = {}


def _remember(cache: dict[str, str], name: str, escaped: str) -> str:
    if len(cache) >= _NAMES_KEPT:
        cache.clear()
    cache[name] = escaped
    return escaped


def _escaped_measurement(measurement: str) -> str:
    if measurement[:1] in ("#", "\t", "\x00"):
        raise LineProtocolError(
            f"measurement {measurement!r} starts with '#' (a comment) or a tab or NUL (skipped before a line)"
        )
    escaped = _name(measurement, "measurement", _ESCAPE_MEASUREMENT)
    if "\\" in measurement:  # InfluxDB's reader also removes a backslash before " or =: escape those too
        escaped = _BACKSLASH_BEFORE_QUOTE_OR_EQUALS.sub(r"\\\1", escaped)
    return _remember(_MEASUREMENTS, measurement, escaped)


def _escaped_field_key(key: str) -> str:
    if key == "time":
        raise LineProtocolError("field key 'time' is dropped by InfluxDB's storage")
    return _remember(_FIELD_KEYS, key, _name(key, "field key", _ESCAPE_FIELD_KEY))


def format_point(point: Point) -> str:
    """Serialize one point; tags and fields are sorted by key. `LineProtocolError` says why it cannot be."""
    fields = point.fields
    if not fields:
        raise LineProtocolError(f"measurement {point.measurement!r}: a point needs at least one field")
    measurement = point.measurement
    escaped = _MEASUREMENTS.get(measurement) or _escaped_measurement(measurement)
    risky = "\\" in measurement
    tags = point.tags
    if tags:
        parts = [escaped]
        for key in sorted(tags):
            value = tags[key]
            if key in _RESERVED_TAG_KEYS:
                raise LineProtocolError(f"tag key {key!r} is reserved by InfluxDB")
            if "\\" in key or "\\" in value:
                risky = True
            escaped_key = _TAG_TEXTS.get(key) or _remember(_TAG_TEXTS, key, _name(key, "tag key", _ESCAPE_TAG))
            escaped_value = _TAG_TEXTS.get(value) or _remember(
                _TAG_TEXTS, value, _name(value, f"tag {key!r} value", _ESCAPE_TAG)
            )
            parts.append(f",{escaped_key}={escaped_value}")
        series_key = "".join(parts)
    else:
        series_key = escaped
    keys = sorted(fields)
    if keys[0][:1] in ("\t", "\x00"):  # skipped as whitespace before the first field: put another key first
        keys.sort(key=lambda k: k[:1] in ("\t", "\x00"))
        if keys[0][:1] in ("\t", "\x00"):
            raise LineProtocolError(f"field keys {keys!r} all start with a tab or NUL, skipped before the fields")
    field_parts = []
    for key in keys:
        escaped_key = _FIELD_KEYS.get(key) or _escaped_field_key(key)
        if "\\" in key:
            risky = True
        field_value = fields[key]
        if type(field_value) is float and field_value - field_value == 0.0:  # finite: inf - inf, nan - nan are nan
            field_parts.append(f"{escaped_key}={field_value!r}")
        elif type(field_value) is int and INT64_MIN <= field_value <= INT64_MAX:
            field_parts.append(f"{escaped_key}={field_value}i")
        else:
            field_parts.append(f"{escaped_key}={_format_field_value(key, field_value)}")
    line = f"{series_key} {','.join(field_parts)}"
    time_ns = point.time_ns
    if time_ns is not None:
        time_ns = int(time_ns)
        if not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
            raise LineProtocolError(
                f"timestamp {time_ns} ns is outside InfluxDB's range {MIN_TIME_NS} to {MAX_TIME_NS}"
            )
        line = f"{line} {time_ns}"
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            raise LineProtocolError(f"text holds {bad!r}, which is not valid UTF-8 (a lone surrogate)") from None
    if len(line) * 4 + 4 > MAX_KEY_BYTES:
        _check_key_lengths(series_key, (k.translate(_ESCAPE_FIELD_KEY) for k in keys))
    if risky:
        _check_reads_back(point, line)
    return line


def _check_reads_back(point: Point, line: str) -> None:
    """A backslash in a name meets the parser's escape quirks: write only what reads back as `point`."""
    blocks = list(_blocks(line))
    try:
        read = _parse(blocks[0][1], blocks[0][2]) if len(blocks) == 1 and blocks[0][1] == line else None
    except LineProtocolError:
        read = None
    wanted = {k: UInt(v) if type(v) is int and v > INT64_MAX else v for k, v in point.fields.items()}
    if read is None or (read.measurement, read.tags, read.fields, read.time_ns) != (
        point.measurement,
        point.tags,
        wanted,
        point.time_ns,
    ):
        raise LineProtocolError(
            f"{line!r} would be read back differently by InfluxDB: a backslash in a name before a space, comma, "
            "equals sign or quote cannot always be written"
        )


def format_lines(points: Iterable[Point]) -> str:
    """Serialize points, one per line, newline-terminated."""
    return "".join(format_point(p) + "\n" for p in points)

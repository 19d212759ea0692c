"""InfluxDB line protocol: one `Point` per line, serialized and parsed with InfluxDB's own escaping rules.

    measurement[,tag=value...] field=value[,field=value...] [timestamp_ns]

Escaping, as InfluxDB 2 reads it:

- measurement: ``,`` and space are escaped with a backslash;
- tag keys, tag values, field keys: ``,``, ``=`` and space (field keys also ``"``);
- string field values are double-quoted; ``"`` and ``\\`` inside are escaped;
- any other backslash is literal. A backslash (odd run of them) just before a character that needs escaping,
  or at the end of a name, cannot be written unambiguously, nor can a newline in a name: such points are
  rejected with `LineProtocolError` rather than written wrongly.

Field types: `float` (``1.5``), `int` (``3i``), `UInt` (``3u``), `str` (``"on"``) and `bool` (``true``).

>>> point = Point("fermenter", {"device": "f1"}, {"temperature": 18.5, "relay": True}, 1_700_000_000_000_000_000)
>>> line = format_point(point)
>>> line
'fermenter,device=f1 relay=true,temperature=18.5 1700000000000000000'
>>> parse_line(line) == point
True
>>> format_point(Point("my meas", {"a=b": "c,d"}, {"msg": 'say "hi"'}))
'my\\\\ meas,a\\\\=b=c\\\\,d msg="say \\\\"hi\\\\""'
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from telestack.core.errors import LineProtocolError

__all__ = [
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


# --- serializing -----------------------------------------------------------------------------------------

_MEASUREMENT_SPECIAL = ", "
_TAG_SPECIAL = ",= "
_FIELD_KEY_SPECIAL = ',= "'
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_ESCAPE_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_ESCAPE_FIELD_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", '"': r"\""})
_ESCAPE_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})
_NEEDS_CHECK = re.compile(r"[\\\n\r]")


def _escape(text: str, what: str, table: dict[int, str], special: str) -> str:
    if not text:
        raise LineProtocolError(f"{what} must not be empty")
    if _NEEDS_CHECK.search(text):
        _check_representable(text, what, special)
    return text.translate(table)


def _check_representable(text: str, what: str, special: str) -> None:
    if "\n" in text or "\r" in text:
        raise LineProtocolError(f"{what} {text!r} contains a newline, which line protocol cannot carry")
    for match in re.finditer(r"\\+", text):
        run_end = match.end()
        odd = (match.end() - match.start()) % 2 == 1
        if odd and (run_end == len(text) or text[run_end] in special):
            raise LineProtocolError(
                f"{what} {text!r} has a backslash before {'its end' if run_end == len(text) else repr(text[run_end])}, "
                "which InfluxDB would read as an escape"
            )


def _format_field_value(key: str, value: FieldValue) -> str:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, UInt):
        if not 0 <= value <= UINT64_MAX:
            raise LineProtocolError(f"field {key!r}: {int(value)} is outside the uint64 range")
        return f"{int(value)}u"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise LineProtocolError(f"field {key!r}: {value} is outside the int64 range")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"field {key!r}: {value} is not finite; InfluxDB stores no NaN or Inf")
        return repr(value)
    if isinstance(value, str):
        return f'"{value.translate(_ESCAPE_STRING)}"'
    raise LineProtocolError(f"field {key!r}: unsupported type {type(value).__name__}")


def format_point(point: Point) -> str:
    """Serialize one point; tags and fields are sorted by key (InfluxDB's preferred order)."""
    if not point.fields:
        raise LineProtocolError(f"measurement {point.measurement!r}: a point needs at least one field")
    if point.measurement.startswith(("#", "\t")):
        raise LineProtocolError(
            f"measurement {point.measurement!r} starts with '#' (a comment) or a tab (skipped as indentation)"
        )
    parts = [_escape(point.measurement, "measurement", _ESCAPE_MEASUREMENT, _MEASUREMENT_SPECIAL)]
    for key in sorted(point.tags):
        value = point.tags[key]
        parts.append(
            f",{_escape(key, 'tag key', _ESCAPE_TAG, _TAG_SPECIAL)}"
            f"={_escape(value, f'tag {key!r} value', _ESCAPE_TAG, _TAG_SPECIAL)}"
        )
    parts.append(" ")
    parts.append(
        ",".join(
            f"{_escape(key, 'field key', _ESCAPE_FIELD_KEY, _FIELD_KEY_SPECIAL)}"
            f"={_format_field_value(key, point.fields[key])}"
            for key in sorted(point.fields)
        )
    )
    if point.time_ns is not None:
        time_ns = int(point.time_ns)
        if not INT64_MIN <= time_ns <= INT64_MAX:
            raise LineProtocolError(f"timestamp {time_ns} ns is outside the int64 range InfluxDB stores")
        parts.append(f" {time_ns}")
    line = "".join(parts)
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            raise LineProtocolError(f"text holds {bad!r}, which is not valid UTF-8 (a lone surrogate)") from None
    return line


def format_lines(points: Iterable[Point]) -> str:
    """Serialize points, one per line, newline-terminated."""
    return "".join(format_point(p) + "\n" for p in points)


# --- parsing ---------------------------------------------------------------------------------------------

_BOOL_VALUES = {
    "t": True, "T": True, "true": True, "True": True, "TRUE": True,
    "f": False, "F": False, "false": False, "False": False, "FALSE": False,
}  # fmt: skip
_INT_RE = re.compile(r"-?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _unescape(text: str, chars: str) -> str:
    if "\\" not in text:
        return text
    for char in chars:
        text = text.replace("\\" + char, char)
    return text


def _unescape_string(raw: str) -> str:
    # InfluxDB unescapes only \\ and \" inside a string field; every other backslash is literal.
    return re.sub(r'\\([\\"])', r"\1", raw)


def _parse_field_value(key: str, raw: str) -> FieldValue:
    if not raw:
        raise LineProtocolError(f"field {key!r} has no value")
    head = raw[0]
    if head == '"':
        if len(raw) < 2 or raw[-1] != '"':
            raise LineProtocolError(f"field {key!r}: unterminated string {raw!r}")
        return _unescape_string(raw[1:-1])
    last = raw[-1]
    if last == "i" and _INT_RE.fullmatch(raw, 0, len(raw) - 1):
        value = int(raw[:-1])
        if not INT64_MIN <= value <= INT64_MAX:
            raise LineProtocolError(f"field {key!r}: {raw} overflows int64")
        return value
    if last == "u" and raw[0] != "-" and _INT_RE.fullmatch(raw, 0, len(raw) - 1):
        value = int(raw[:-1])
        if value > UINT64_MAX:
            raise LineProtocolError(f"field {key!r}: {raw} overflows uint64")
        return UInt(value)
    boolean = _BOOL_VALUES.get(raw)
    if boolean is not None:
        return boolean
    if _FLOAT_RE.fullmatch(raw):
        number = float(raw)
        if not math.isfinite(number):
            raise LineProtocolError(f"field {key!r}: {raw} is out of the float64 range")
        return number
    raise LineProtocolError(f"field {key!r}: invalid value {raw!r}")


def _parse_timestamp(raw: str) -> int:
    if not _INT_RE.fullmatch(raw):
        raise LineProtocolError(f"invalid timestamp {raw!r}")
    value = int(raw)
    if not INT64_MIN <= value <= INT64_MAX:
        raise LineProtocolError(f"timestamp {raw} overflows int64")
    return value


def _parse_simple(line: str) -> Point:
    """Fast path: no backslash and no double quote anywhere in the line."""
    sections = line.split(" ")
    if len(sections) not in (2, 3) or not all(sections):
        raise LineProtocolError("expected 'measurement[,tags] fields [timestamp]' separated by single spaces")
    key, field_set = sections[0], sections[1]
    measurement, *tag_pairs = key.split(",")
    if not measurement:
        raise LineProtocolError("missing measurement")
    tags: dict[str, str] = {}
    for pair in tag_pairs:
        tag_key, sep, tag_value = pair.partition("=")
        if not sep or not tag_key or not tag_value or "=" in tag_value:
            raise LineProtocolError(f"invalid tag {pair!r}")
        tags[tag_key] = tag_value
    fields: dict[str, FieldValue] = {}
    for pair in field_set.split(","):
        field_key, sep, raw = pair.partition("=")
        if not sep or not field_key:
            raise LineProtocolError(f"invalid field {pair!r}")
        fields[field_key] = _parse_field_value(field_key, raw)
    time_ns = _parse_timestamp(sections[2]) if len(sections) == 3 else None
    return Point(measurement, tags, fields, time_ns)


class _Scanner:
    """Walks a line that holds escapes or quoted strings; a backslash always skips the character after it."""

    __slots__ = ("line", "pos")

    def __init__(self, line: str) -> None:
        self.line = line
        self.pos = 0

    def token(self, stops: str) -> tuple[str, str]:
        """Read up to the first unescaped char in `stops`; return (raw token, stop char or '')."""
        line, start = self.line, self.pos
        i = start
        n = len(line)
        while i < n:
            char = line[i]
            if char == "\\":
                i += 2
                continue
            if char in stops:
                self.pos = i + 1
                return line[start:i], char
            i += 1
        self.pos = n
        return line[start:n], ""

    def quoted(self) -> str:
        """Read a double-quoted string starting at the current position; return it with its quotes."""
        line, start = self.line, self.pos
        i = start + 1
        n = len(line)
        while i < n:
            char = line[i]
            if char == "\\":
                i += 2
                continue
            if char == '"':
                self.pos = i + 1
                return line[start : i + 1]
            i += 1
        raise LineProtocolError(f"unterminated string starting at column {start + 1}")


def _parse_escaped(line: str) -> Point:
    scan = _Scanner(line)
    raw_measurement, stop = scan.token(", ")
    if not raw_measurement or not stop:
        raise LineProtocolError("missing measurement or fields")
    measurement = _unescape(raw_measurement, ", ")
    tags: dict[str, str] = {}
    while stop == ",":
        raw_key, sep = scan.token("=, ")
        if sep != "=" or not raw_key:
            raise LineProtocolError(f"invalid tag key {raw_key!r}")
        raw_value, stop = scan.token(", =")
        if stop == "=" or not raw_value or not stop:
            raise LineProtocolError(f"invalid value for tag {raw_key!r}")
        tags[_unescape(raw_key, ",= ")] = _unescape(raw_value, ",= ")
    fields: dict[str, FieldValue] = {}
    stop = ","
    while stop == ",":
        raw_key, sep = scan.token("=, ")
        if sep != "=" or not raw_key:
            raise LineProtocolError(f"invalid field key {raw_key!r}")
        key = _unescape(raw_key, ',= "')
        if scan.pos < len(line) and line[scan.pos] == '"':
            raw_value = scan.quoted()
            stop = line[scan.pos] if scan.pos < len(line) else ""
            if stop not in (",", " ", ""):
                raise LineProtocolError(f"field {key!r}: unexpected {stop!r} after string")
            scan.pos += 1
        else:
            raw_value, stop = scan.token(", ")
        fields[key] = _parse_field_value(key, raw_value)
    time_ns = None
    if stop == " ":
        rest = line[scan.pos :]
        if not rest:
            raise LineProtocolError("trailing space after fields")
        time_ns = _parse_timestamp(rest)
    return Point(measurement, tags, fields, time_ns)


def parse_line(line: str, line_no: int | None = None) -> Point:
    """Parse one line of line protocol (without its newline) into a `Point`."""
    try:
        if "\\" in line or '"' in line:
            return _parse_escaped(line)
        return _parse_simple(line)
    except LineProtocolError as exc:
        if line_no is not None and exc.line_no is None:
            raise LineProtocolError(exc.reason, line_no=line_no, line=line) from None
        raise


def iter_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line) for each non-empty, non-comment line.

    Newlines inside quoted string fields stay inside their line, as InfluxDB reads them.
    """
    if '"' not in text:
        raw_lines: Iterable[str] = text.split("\n")
    else:
        raw_lines = _split_quote_aware(text)
    next_no = 1
    for raw in raw_lines:
        line_no = next_no
        next_no += 1 + raw.count("\n")
        line = raw.rstrip("\r").lstrip(" \t")
        if line and not line.startswith("#"):
            yield line_no, line


_KEY_SECTION = re.compile(r"(?:\\.|[^\\ ])*", re.S)  # measurement and tags: up to the first unescaped space
_ESCAPE_OR_QUOTE = re.compile(r'\\.|"', re.S)


def _quotes_balanced(line: str) -> bool:
    """Whether every string field opened in `line` is closed (quotes in measurement and tags are literal)."""
    match = _KEY_SECTION.match(line)
    start = match.end() if match else 0
    return sum(1 for token in _ESCAPE_OR_QUOTE.findall(line, start) if token == '"') % 2 == 0


def _split_quote_aware(text: str) -> list[str]:
    """Split on newlines, except those inside a quoted string field."""
    lines: list[str] = []
    pending: str | None = None
    for piece in text.split("\n"):
        if pending is None:
            if '"' not in piece or _quotes_balanced(piece):
                lines.append(piece)
            else:
                pending = piece
        else:
            pending += "\n" + piece
            if _quotes_balanced(pending):
                lines.append(pending)
                pending = None
    if pending is not None:
        lines.append(pending)
    return lines


def parse_lines(text: str) -> list[Point]:
    """Parse a block of line protocol; the first bad line raises `LineProtocolError` naming its number."""
    return [parse_line(line, line_no) for line_no, line in iter_lines(text)]

"""HTTP ingest for edge boxes, as pure functions: a request body → the telemetry records to produce, or a refusal.

An edge box (seed 004) posts line protocol (``text/plain``) or a JSON batch (``application/json``), optionally
gzipped, with a site token. Every line is checked before anything is produced: one bad line refuses the whole
request (400, listing every bad line), so nothing is partially accepted. The site tag is forced to the token's
site; a line that names another site, a measurement the token's grant does not list, or a device (or vehicle)
it may not write for is refused (403): a site's token does not speak for the car. A point with more than
``max_fields`` fields, or a request with more than ``max_lines`` points, is refused whole (413). Points without
a timestamp get the arrival time, as InfluxDB would give them.

A JSON batch::

    {"points": [{"measurement": "energy", "tags": {"device": "box-7", "sensor": "meter-3"},
                 "fields": {"mean": 21.5, "min": 20.1, "max": 22.0, "diff": 1.9},
                 "time": "2024-05-01T12:00:00Z"}]}

JSON numbers become float fields (as Telegraf's JSON parser does), so a value that is sometimes whole and
sometimes not keeps one type in InfluxDB; use line protocol (``3i``) for integer fields.

>>> batch = prepare_batch(b"room,device=box-7 temp=21.5 1700000000", "text/plain", None,
...     IngestOptions(site="hq", precision="s", now_ns=0))
>>> batch.records[0].key, batch.records[0].value
('box-7', 'room,device=box-7,site=hq temp=21.5 1700000000000000000\\n')
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from telestack.actuator.errors import Forbidden, InvalidInput, PayloadTooLarge, Problem, UnsupportedMedia
from telestack.actuator.tokens import IngestGrant
from telestack.core.errors import LineProtocolError
from telestack.core.lineproto import MAX_TIME_NS, MIN_TIME_NS, FieldValue, Point, format_point, iter_lines, parse_line

__all__ = [
    "MEDIA_TYPES",
    "PRECISIONS",
    "IngestBatch",
    "IngestOptions",
    "JsonBatch",
    "JsonPoint",
    "TelemetryRecord",
    "decode_body",
    "prepare_batch",
]

PRECISIONS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
MEDIA_TYPES = ("text/plain", "application/json")
MAX_LISTED_PROBLEMS = 100
_FORM = "application/x-www-form-urlencoded"  # what curl -d / --data-binary sends without -H Content-Type
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class JsonPoint(BaseModel):
    """One point of a JSON batch."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "measurement": "energy",
                    "tags": {"device": "box-7", "sensor": "meter-3"},
                    "fields": {"mean": 21.5, "min": 20.1, "max": 22.0, "diff": 1.9},
                    "time": "2024-05-01T12:00:00Z",
                }
            ]
        },
    )

    measurement: str = Field(min_length=1, max_length=256)
    tags: dict[str, str] = Field(default_factory=dict, description="the site tag is set from the token")
    fields: dict[str, FiniteFloat | bool | str] = Field(
        min_length=1, description="numbers are stored as floats; true/false as booleans; strings as strings"
    )
    time: AwareDatetime | int | None = Field(
        None,
        description="RFC 3339 time with a zone, or an integer in the request's ?precision= (default ns); "
        "absent: arrival time",
    )


class JsonBatch(BaseModel):
    """The JSON body of ``POST /v1/ingest``."""

    model_config = ConfigDict(extra="forbid")

    points: list[JsonPoint] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """What a request's points are checked and stamped with."""

    site: str
    precision: str = "ns"
    now_ns: int = 0
    site_tag: str = "site"
    key_tag: str = "device"
    max_lines: int = 100_000
    max_record_bytes: int = 512_000
    max_fields: int = 256
    grant: IngestGrant | None = None  # None: a legacy token, any measurement and device of its site
    identity_tags: tuple[str, ...] = ("device", "vehicle")  # whose values `grant.devices` limits


@dataclass(frozen=True, slots=True)
class TelemetryRecord:
    """One Kafka ``telemetry`` record: newline-terminated lines sharing a key."""

    key: str
    value: str
    lines: int


@dataclass(slots=True)
class IngestBatch:
    site: str
    points: int = 0
    records: list[TelemetryRecord] = field(default_factory=list)


def media_type(content_type: str | None) -> str:
    """``text/plain`` or ``application/json`` from a Content-Type header, else `UnsupportedMedia`."""
    if not content_type:
        return "text/plain"  # as InfluxDB's write API: line protocol unless told otherwise
    main, *params = (part.strip() for part in content_type.split(";"))
    main = main.lower()
    if main not in MEDIA_TYPES:
        hint = ""
        if main == _FORM:
            hint = " (curl --data-binary sends a form type unless given -H 'Content-Type: text/plain')"
        raise UnsupportedMedia(
            f"content type {main!r} is not read here; send line protocol as text/plain or a JSON batch as "
            f"application/json{hint}"
        )
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMedia(f"charset {value.strip()!r} is not read here; send UTF-8")
    return main


def decode_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body after its Content-Encoding (none or gzip), at most `max_bytes` long."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise UnsupportedMedia(f"content encoding {encoding!r} is not read here; send gzip or none")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the body is not valid gzip: {exc}") from None
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"the body decompresses to more than {max_bytes} bytes")
    if not inflater.eof:
        raise InvalidInput("the gzip body is truncated")
    if inflater.unused_data:
        raise InvalidInput("unexpected data after the end of the gzip stream")
    return data


def _refuse(problems: list[Problem], forbidden: list[Problem], what: str) -> None:
    if forbidden:
        listed = forbidden[:MAX_LISTED_PROBLEMS]
        raise Forbidden(
            f"{len(forbidden)} {what} write what the token may not (another site, measurement or device); "
            "nothing was accepted",
            listed,
        )
    if problems:
        listed = problems[:MAX_LISTED_PROBLEMS]
        more = len(problems) - len(listed)
        numbers = ", ".join(str(p.line) for p in listed if p.line is not None)
        detail = f"{len(problems)} invalid {what}; nothing was accepted"
        if numbers:
            detail += f" (lines {numbers}{f' and {more} more' if more else ''})"
        raise InvalidInput(detail, listed)


def _trespass(point: Point, opts: IngestOptions) -> str | None:
    """Why the token may not write `point` (another site, a measurement or device outside its grant), or None."""
    claimed = point.tags.get(opts.site_tag)
    if claimed is not None and claimed != opts.site:
        return f"tag {opts.site_tag}={claimed} is not the token's site {opts.site}"
    grant = opts.grant
    if grant is None:
        return None
    if not grant.allows_measurement(point.measurement):
        return f"measurement {point.measurement!r} is not one the token may write ({','.join(grant.measurements)})"
    for tag in opts.identity_tags:
        value = point.tags.get(tag)
        if value is not None and not grant.allows_device(value):
            return f"tag {tag}={value} is not a device the token may write for ({','.join(grant.devices)})"
    return None


def _stamp(point: Point, opts: IngestOptions, where: str) -> str:
    """Force the site tag and fill a missing timestamp; the point's line."""
    point.tags[opts.site_tag] = opts.site
    if point.time_ns is None:
        point.time_ns = opts.now_ns
    line = format_point(point)
    if len(line) + 1 > opts.max_record_bytes:
        raise LineProtocolError(f"{where} is longer than {opts.max_record_bytes} bytes")
    return line


def _scaled(time: int | None, precision: str) -> int | None:
    """A timestamp in `precision` → ns; `LineProtocolError` past int64."""
    if time is None:
        return None
    ns = time * PRECISIONS[precision]
    if not MIN_TIME_NS <= ns <= MAX_TIME_NS:
        raise LineProtocolError(f"timestamp {time} in precision {precision} is outside InfluxDB's range")
    return ns


def _check_points(
    points: Iterable[tuple[int, Point | LineProtocolError]], opts: IngestOptions, *, numbered: bool
) -> list[tuple[Point, str]]:
    problems: list[Problem] = []
    forbidden: list[Problem] = []
    accepted: list[tuple[Point, str]] = []
    count = 0
    for number, parsed in points:
        count += 1
        if count > opts.max_lines:
            raise PayloadTooLarge(
                f"more than {opts.max_lines} {'lines' if numbered else 'points'} in one request "
                "(actuator.ingest_max_lines); split it, nothing was accepted"
            )
        loc: tuple[str | int, ...] = ("body", "line", number) if numbered else ("body", "points", number - 1)
        where = f"line {number}" if numbered else f"point {number}"
        line_no = number if numbered else None
        if isinstance(parsed, LineProtocolError):
            problems.append(Problem(loc, f"{where}: {parsed.reason}", line_no))
            continue
        if len(parsed.fields) > opts.max_fields:
            raise PayloadTooLarge(
                f"{where} has {len(parsed.fields)} fields; at most {opts.max_fields} per point "
                "(actuator.ingest_max_fields); nothing was accepted"
            )
        refusal = _trespass(parsed, opts)
        if refusal is not None:
            forbidden.append(Problem(loc, f"{where}: {refusal}", line_no))
            continue
        try:
            line = _stamp(parsed, opts, where)
        except LineProtocolError as exc:
            problems.append(Problem(loc, f"{where}: {exc.reason}", line_no))
            continue
        accepted.append((parsed, line))
    what = "lines" if numbered else "points"
    _refuse(problems, forbidden, what)
    if not accepted:
        raise InvalidInput(f"no {what} in the body (empty, or only comments)")
    return accepted


def _parse_line_protocol(data: bytes, precision: str) -> Iterator[tuple[int, Point | LineProtocolError]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(
            f"line {line_no} is not valid UTF-8; nothing was accepted",
            [Problem(("body", "line", line_no), f"line {line_no}: invalid UTF-8 at byte {exc.start}", line_no)],
        ) from None
    for line_no, line in iter_lines(text):
        try:
            point = parse_line(line, line_no)
            point.time_ns = _scaled(point.time_ns, precision)
        except LineProtocolError as exc:
            yield line_no, exc
        else:
            yield line_no, point


def _describe(err: Any) -> str:
    where = ".".join(str(part) for part in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def _time_ns(value: datetime | int | None, precision: str) -> int | None:
    if isinstance(value, datetime):
        ns = (value - _EPOCH) // timedelta(microseconds=1) * 1_000
        if not MIN_TIME_NS <= ns <= MAX_TIME_NS:
            raise LineProtocolError(f"time {value.isoformat()} is outside InfluxDB's range (years 1678-2262)")
        return ns
    return _scaled(value, precision)


def _parse_json(data: bytes, precision: str) -> Iterator[tuple[int, Point | LineProtocolError]]:
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, integers of thousands of digits, deep nesting
        line = getattr(exc, "lineno", None)
        raise InvalidInput(
            f"the body is not valid JSON: {exc}",
            [Problem(("body",), f"not JSON: {exc}", line)],
        ) from None
    items = raw.get("points") if isinstance(raw, dict) else raw
    if not isinstance(items, list) or (isinstance(raw, dict) and set(raw) != {"points"}):
        raise InvalidInput(
            'a JSON batch is {"points": [...]} (or a bare list of points)',
            [Problem(("body",), 'expected {"points": [...]}')],
        )
    for index, item in enumerate(items, start=1):
        try:
            point = JsonPoint.model_validate(item)
        except ValidationError as exc:
            reason = "; ".join(_describe(err) for err in exc.errors(include_url=False))
            yield index, LineProtocolError(reason)
            continue
        fields: dict[str, FieldValue] = dict(point.fields)
        try:
            time_ns = _time_ns(point.time, precision)
        except LineProtocolError as exc:
            yield index, exc
            continue
        yield index, Point(point.measurement, dict(point.tags), fields, time_ns)


def group_records(points: list[tuple[Point, str]], opts: IngestOptions) -> list[TelemetryRecord]:
    """Lines grouped by key (the `key_tag` value, else the site), in order, each record ≤ `max_record_bytes`."""
    records: list[TelemetryRecord] = []
    open_chunks: dict[str, tuple[list[str], int]] = {}
    for point, line in points:
        key = point.tags.get(opts.key_tag) or opts.site
        lines, size = open_chunks.get(key, ([], 0))
        if lines and size + len(line) + 1 > opts.max_record_bytes:
            records.append(TelemetryRecord(key, "".join(f"{item}\n" for item in lines), len(lines)))
            lines, size = [], 0
        lines.append(line)
        open_chunks[key] = (lines, size + len(line) + 1)
    for key, (lines, _) in open_chunks.items():
        records.append(TelemetryRecord(key, "".join(f"{item}\n" for item in lines), len(lines)))
    return records


def prepare_batch(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    opts: IngestOptions,
    *,
    max_decompressed_bytes: int = 16_777_216,
) -> IngestBatch:
    """Check a whole ingest body and return its records; raises a `RequestError` if any of it is refused."""
    if opts.precision not in PRECISIONS:
        raise InvalidInput(f"precision must be one of {', '.join(PRECISIONS)}")
    kind = media_type(content_type)
    data = decode_body(body, content_encoding, max_decompressed_bytes)
    if kind == "application/json":
        accepted = _check_points(_parse_json(data, opts.precision), opts, numbered=False)
    else:
        accepted = _check_points(_parse_line_protocol(data, opts.precision), opts, numbered=True)
    return IngestBatch(opts.site, len(accepted), group_records(accepted, opts))

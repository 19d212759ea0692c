"""Mapping one MQTT message to line protocol: pure functions of (rules, topic, payload, arrival time).

The bridge calls `map_message` for every message; what it returns is produced to Kafka ``telemetry`` with
the device id as key, what it raises (`MappingError`) goes to the dead-letter topic with its reason.

>>> from telestack.mqtt_bridge.rules import parse_rules
>>> rules = parse_rules('''
... rules:
...   - {name: stc1000, topic: "fermenters/{device}/{field}", format: value, measurement: fermenter,
...      field: "{field}", types: {cooling: bool}}
... ''')
>>> m = map_message(rules, "fermenters/f2/temperature", b"5.9", 1_700_000_000_000_000_000)
>>> m.key, m.value
('f2', 'fermenter,device=f2 temperature=5.9 1700000000000000000\\n')
>>> map_message(rules, "fermenters/f2/cooling", b"true", 1_700_000_000_000_000_000).value
'fermenter,device=f2 cooling=true 1700000000000000000\\n'
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from telestack.core.errors import LineProtocolError
from telestack.core.lineproto import FieldValue, Point, UInt, parse_lines
from telestack.mqtt_bridge.errors import MappingError
from telestack.mqtt_bridge.lines import LineWriter
from telestack.mqtt_bridge.rules import FieldType, RuleSet, TimestampSpec, TopicMatch

__all__ = ["Mapped", "coerce", "flatten", "map_message", "map_value_text", "parse_timestamp"]

_UNITS_NS = {"unix": 1_000_000_000, "unix_ms": 1_000_000, "unix_us": 1_000, "unix_ns": 1}
_TRUE = frozenset({"true", "on", "yes", "1"})
_FALSE = frozenset({"false", "off", "no", "0"})
_INT64_MAX = 2**63 - 1
# JSON values that need no conversion to the wanted type.
_ALREADY: dict[str, type] = {"float": float, "int": int, "bool": bool, "string": str}
# Escaped names are cached across messages (a cache only: the output is that of format_lines).
_WRITER = LineWriter()


@dataclass(frozen=True, slots=True)
class Mapped:
    """What one MQTT message becomes: a Kafka record of one or more lines."""

    key: str  # the device id
    value: str  # line protocol, newline-terminated
    rule: str
    points: int


def map_message(rules: RuleSet, topic: str, payload: bytes, arrival_ns: int) -> Mapped:
    """Map one message with the first rule matching `topic`; `arrival_ns` is the time of points without one.

    Raises `MappingError` (reason unmapped, unparseable or invalid) when no line can be made of it.
    """
    found = rules.match(topic)
    if found is None:
        raise MappingError("unmapped", f"no rule matches topic {topic!r}")
    compiled = found.rule
    fmt = compiled.rule.format
    try:
        if fmt == "value":
            points = [_map_value(found, payload, arrival_ns)]
        elif fmt == "json":
            points = _map_json(found, payload, arrival_ns)
        else:
            points = _map_line(found, payload, arrival_ns)
        text = _WRITER.format(points)
        if not text.isascii():
            text.encode("utf-8")  # a lone surrogate from JSON ("\ud800") cannot be sent to Kafka
    except MappingError as exc:
        exc.rule = compiled.name
        raise
    except LineProtocolError as exc:
        raise MappingError("invalid", str(exc), rule=compiled.name) from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # A JSON number too large for a float, an integer of thousands of digits, nesting too deep, bad UTF-16.
        raise MappingError("invalid", f"{type(exc).__name__}: {exc}"[:500], rule=compiled.name) from None
    return Mapped(key=found.key, value=text, rule=compiled.name, points=len(points))


def _decode(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MappingError("unparseable", f"payload is not UTF-8 text: {exc}") from None


# --- plain values ---------------------------------------------------------------------------------------


def _map_value(found: TopicMatch, payload: bytes, arrival_ns: int) -> Point:
    assert found.measurement is not None
    field = found.field
    value = map_value_text(_decode(payload), found.rule.rule.types.get(field), field)
    return Point(found.measurement, found.tags, {field: value}, arrival_ns)


def map_value_text(text: str, field_type: FieldType | None, name: str = "value") -> FieldValue:
    """A plain payload as a field value; without a type: a number is a float, true/false/on/off a bool.

    >>> map_value_text(" 21.5\\n", None), map_value_text("ON", None), map_value_text("online", None)
    (21.5, True, 'online')
    """
    text = text.strip()
    if not text:
        raise MappingError("unparseable", "empty payload")
    if field_type is not None:
        return coerce(text, field_type, name)
    try:
        number = float(text)
    except ValueError:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        return text
    if not math.isfinite(number):
        raise MappingError("invalid", f"value {text!r} is not a finite number")
    return number


# --- JSON -----------------------------------------------------------------------------------------------


def _map_json(found: TopicMatch, payload: bytes, arrival_ns: int) -> list[Point]:
    text = _decode(payload)  # JSON is UTF-8 (RFC 8259); decoding first skips json's encoding detection
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MappingError("unparseable", f"payload is not JSON: {exc}") from None
    if isinstance(document, dict):
        objects: list[Any] = [document]
    elif isinstance(document, list) and document and all(isinstance(item, dict) for item in document):
        objects = document
    else:
        kind = "an empty array" if document == [] else type(document).__name__
        raise MappingError(
            "invalid", f"JSON payload is {kind}; expected an object or an array of objects (format value for scalars)"
        )
    return [_json_point(found, obj, arrival_ns) for obj in objects]


def _json_point(found: TopicMatch, obj: dict[str, Any], arrival_ns: int) -> Point:
    compiled = found.rule
    rule = compiled.rule
    flat = flatten(obj, rule.separator)
    time_ns = arrival_ns
    if rule.timestamp is not None:
        raw = flat.pop(rule.timestamp.field, None)
        if raw is None:
            raise MappingError("invalid", f"timestamp key {rule.timestamp.field!r} is missing")
        time_ns = parse_timestamp(raw, rule.timestamp)
    tags = found.tags
    if compiled.tag_keys:
        tags = dict(tags)
        for key in compiled.tag_keys:
            tag = flat.pop(key, None)
            if tag is not None and tag != "":
                _bind_tag(tags, key, _tag_text(tag), found.bound_tags)
    for key in compiled.exclude:
        flat.pop(key, None)
    if compiled.renames is not None:
        flat = {new: flat[old] for old, new in compiled.renames.items() if old in flat}
    types = rule.types
    fields: dict[str, FieldValue] = {}
    for key, value in flat.items():
        wanted = types.get(key)
        kind = type(value)
        if wanted is None:
            fields[key] = value if kind is bool or kind is str else float(value)
        elif _ALREADY.get(wanted) is kind:
            fields[key] = value  # already the wanted type (ints are range-checked when written)
        else:
            fields[key] = coerce(value, wanted, key)
    if not fields:
        raise MappingError("invalid", "no fields left after selection (check fields, exclude and tag_keys)")
    return Point(found.measurement or "", tags, fields, time_ns)


def flatten(obj: Any, separator: str = "_", prefix: str = "") -> dict[str, Any]:
    """Nested objects and arrays as one level of scalars; nulls are dropped.

    >>> flatten({"ENERGY": {"Power": 35, "Phases": [230.1, 229.8]}, "Time": "2024-01-15T10:23:45", "x": None})
    {'ENERGY_Power': 35, 'ENERGY_Phases_0': 230.1, 'ENERGY_Phases_1': 229.8, 'Time': '2024-01-15T10:23:45'}
    """
    out: dict[str, Any] = {}
    _flatten_into(out, obj, separator, prefix)
    return out


def _flatten_into(out: dict[str, Any], obj: Any, separator: str, prefix: str) -> None:
    if isinstance(obj, dict):
        items: Any = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        if obj is not None:
            out[prefix or "value"] = obj
        return
    for key, value in items:
        name = f"{prefix}{separator}{key}" if prefix else key if type(key) is str else str(key)
        if isinstance(value, dict | list):
            _flatten_into(out, value, separator, name)
        elif value is not None:
            out[name] = value


def _tag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def coerce(value: Any, field_type: FieldType, key: str) -> FieldValue:
    """Convert a JSON scalar (or text) to `field_type`; `MappingError` (invalid) when it cannot be.

    >>> coerce("130", "int", "PAPP"), coerce(1.0, "bool", "relay"), coerce(True, "string", "s")
    (130, True, 'true')
    """
    try:
        if field_type == "float":
            number = float(value.strip()) if isinstance(value, str) else float(value)
            if not math.isfinite(number):
                raise ValueError("not finite")
            return number
        if field_type in ("int", "uint"):
            if isinstance(value, str):
                text = value.strip()
                integer = int(text) if text.lstrip("+-").isdigit() else _integral(float(text))
            elif isinstance(value, float):
                integer = _integral(value)
            else:
                integer = int(value)
            if field_type == "uint":
                if integer < 0:
                    raise ValueError("negative")
                return UInt(integer)
            if integer > _INT64_MAX or integer < -_INT64_MAX - 1:
                raise ValueError("outside int64")
            return integer
        if field_type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int | float):
                if value in (0, 1):
                    return bool(value)
                raise ValueError("not 0 or 1")
            lowered = str(value).strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError("not a boolean word")
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise MappingError("invalid", f"field {key!r}: {value!r} is not a valid {field_type} ({exc})") from None


def _integral(number: float) -> int:
    if not number.is_integer():
        raise ValueError("has a fractional part")
    return int(number)


# --- timestamps -----------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def parse_timestamp(raw: Any, spec: TimestampSpec) -> int:
    """Nanoseconds since the epoch from a payload's time value, as `spec` describes it.

    >>> parse_timestamp("2024-01-15T10:23:45", TimestampSpec(field="Time", timezone="Europe/Paris"))
    1705310625000000000
    >>> parse_timestamp(1705310625123, TimestampSpec(field="ts", format="unix_ms"))
    1705310625123000000
    """
    fmt = spec.format
    try:
        unit = _UNITS_NS.get(fmt)
        if unit is not None:
            if isinstance(raw, bool):
                raise ValueError("a boolean is not a time")
            if isinstance(raw, str):
                raw = raw.strip()
                number: int | float = int(raw) if raw.lstrip("-").isdigit() else float(raw)
            else:
                number = raw
            if isinstance(number, float):
                if not math.isfinite(number):
                    raise ValueError("not finite")
                # Split to keep sub-second precision that a float of seconds since 1970 still holds.
                whole = math.floor(number)
                return int(whole) * unit + round((number - whole) * unit)
            return int(number) * unit
        if not isinstance(raw, str):
            raise ValueError(f"expected text for format {fmt}")
        text = raw.strip()
        moment = datetime.fromisoformat(text) if fmt == "rfc3339" else datetime.strptime(text, fmt)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_zone(spec.timezone))
        delta = moment - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    except (ValueError, TypeError, OverflowError) as exc:
        raise MappingError("invalid", f"timestamp {raw!r} does not match format {fmt!r} ({exc})") from None


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


# --- line protocol --------------------------------------------------------------------------------------


def _map_line(found: TopicMatch, payload: bytes, arrival_ns: int) -> list[Point]:
    text = _decode(payload)
    try:
        points = parse_lines(text)
    except LineProtocolError as exc:
        raise MappingError("unparseable", f"invalid line protocol: {exc}") from None
    if not points:
        raise MappingError("unparseable", "no line protocol in payload")
    bound = found.bound_tags
    for point in points:
        if point.time_ns is None:
            point.time_ns = arrival_ns
        for key, value in found.tags.items():
            _bind_tag(point.tags, key, point.tags.get(key, value), bound)
    return points


# --- identity -------------------------------------------------------------------------------------------


def _bind_tag(tags: dict[str, str], key: str, value: str, bound: dict[str, str]) -> None:
    """Set tag `key` to `value` from the payload, unless `bound` (the topic's identity tags) fixes it otherwise.

    The topic is the device's authenticated identity (the broker's ACL lets a login publish only under its own
    topics), so a payload may repeat a bound tag but never change it: ``device=f2`` sent on f1's topic is
    refused (``tag_mismatch``) rather than stored as f2's data. Unbound rule tags (``site: lab``) stay defaults.
    """
    fixed = bound.get(key)
    if fixed is not None and value != fixed:
        raise MappingError("tag_mismatch", f"payload tag {key}={value!r} contradicts {key}={fixed!r} set by the topic")
    tags[key] = value

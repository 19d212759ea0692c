"""Line protocol for the bridge's points: exactly `telestack.core.lineproto.format_lines`, with names cached.

Devices repeat the same measurement, tags and field names in every message, so their escaped forms are
computed once (by `format_point` itself) and reused; only the values are formatted per message. Values of
other types than float, int and bool, and anything `format_point` would refuse, go through `format_point`,
which formats them or raises its `LineProtocolError`. ``tests/mqtt_bridge/test_lines.py`` checks that both
give the same text for arbitrary points.

>>> writer = LineWriter()
>>> writer.format([Point("plug", {"device": "p 1"}, {"relay": True, "power": 12.5}, 1)])
'plug,device=p\\\\ 1 power=12.5,relay=true 1\\n'
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from telestack.core.lineproto import MAX_TIME_NS, MIN_TIME_NS, Point, format_point

__all__ = ["LineWriter"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SHORT_LINE = 16_000  # characters: no series key limit (65,535 bytes) can be reached, at 4 bytes a character
_LONG_STRING = 262_144  # characters: from here a string value may pass InfluxDB's 1 MiB limit
_ESCAPE_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})
# Past this many distinct names, a cache starts over (a topic level used as a tag could be unbounded).
_CACHE_LIMIT = 20_000


class LineWriter:
    """Formats points like `format_lines`; keeps escaped prefixes (measurement and tags) and field keys."""

    __slots__ = ("_keys", "_prefixes")

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self._keys: dict[str, str] = {}

    def format(self, points: Iterable[Point]) -> str:
        """The points as newline-terminated lines; `LineProtocolError` for a point that cannot be written."""
        return "".join(self.line(point) + "\n" for point in points)

    def line(self, point: Point) -> str:
        fields = point.fields
        if not fields:
            return format_point(point)  # raises: a point needs a field
        cache_key = (point.measurement, tuple(point.tags.items()))
        prefix = self._prefixes.get(cache_key)
        if prefix is None:
            if "\\" in point.measurement or any("\\" in k or "\\" in v for k, v in point.tags.items()):
                return format_point(point)  # a backslash: the reference checks the whole line reads back
            # format_point escapes (or refuses) measurement and tags; " _=true" is the one-field tail.
            prefix = format_point(Point(point.measurement, point.tags, {"_": True}))[: -len(" _=true")]
            if len(self._prefixes) >= _CACHE_LIMIT:
                self._prefixes.clear()
            self._prefixes[cache_key] = prefix
        parts = []
        keys = self._keys
        for name in sorted(fields):
            value = fields[name]
            kind = type(value)
            if kind is float:
                if not math.isfinite(value):  # type: ignore[arg-type]
                    return format_point(point)  # raises, naming the field
                text = repr(value)
            elif kind is bool:
                text = "true" if value else "false"
            elif kind is int:
                if not _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
                    return format_point(point)  # raises, naming the field
                text = f"{value}i"
            elif kind is str:
                if len(value) >= _LONG_STRING:  # type: ignore[arg-type]
                    return format_point(point)  # formats or refuses (over 1 MiB)
                text = f'"{value.translate(_ESCAPE_STRING)}"'  # type: ignore[union-attr]
            else:
                return format_point(point)  # UInt and anything else: the reference formats or refuses it
            key = keys.get(name)
            if key is None:
                if "\\" in name or name[:1] in ("\t", "\x00"):
                    return format_point(point)  # backslash, or skipped as whitespace if first: the reference
                key = format_point(Point("m", {}, {name: True}))[2 : -len("=true")]
                if len(keys) >= _CACHE_LIMIT:
                    keys.clear()
                keys[name] = key
            parts.append(f"{key}={text}")
        line = f"{prefix} {','.join(parts)}"
        if point.time_ns is not None:
            if not MIN_TIME_NS <= point.time_ns <= MAX_TIME_NS:
                return format_point(point)  # raises: outside InfluxDB's time range
            line = f"{line} {int(point.time_ns)}"
        if len(line) > _SHORT_LINE or not (line.isascii() or _utf8(line)):
            return format_point(point)  # key length limits, lone surrogates: the reference formats or refuses
        return line


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

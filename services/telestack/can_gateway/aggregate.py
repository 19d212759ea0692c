"""Edge aggregation for thin links: per series and interval, mean/min/max/last/count of every field.

Windows are aligned on the epoch (``[k * interval, (k + 1) * interval)``, frame time), so a session replayed or
redelivered yields the very same points, which InfluxDB then overwrites instead of doubling. A window is
emitted when a later frame of the same series passes its end, or by `flush_before` (the gateway calls it with
the newest frame time it has seen, minus a grace), or at `flush_all` on shutdown.

A numeric field ``rpm`` becomes ``rpm_mean`` (float), ``rpm_min``, ``rpm_max``, ``rpm_last`` and ``rpm_count``
(int), as chosen; a string field keeps ``_last`` and ``_count``. The point's timestamp is its window's start.

A line it cannot read, or a window it cannot write as line protocol, never raises: it is kept in `rejected`
with the reason, for the gateway to dead-letter (`take_rejected`), and the other lines go on.

>>> agg = Aggregator(interval_s=1.0, functions=("mean", "max", "count"))
>>> agg.add_lines(["m,bus=b a=1.0 1000000000", "m,bus=b a=3.0 1500000000", "m,bus=b a=5.0 2000000000"])
['m,bus=b a_count=2i,a_max=3.0,a_mean=2.0 1000000000']
>>> agg.flush_all()
['m,bus=b a_count=1i,a_max=5.0,a_mean=5.0 2000000000']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from telestack.core.errors import LineProtocolError
from telestack.core.lineproto import FieldValue, Point, format_point, iter_lines, parse_line

__all__ = ["FUNCTIONS", "Aggregator"]

FUNCTIONS = ("mean", "min", "max", "last", "count")


@dataclass(slots=True)
class _Stats:
    count: int = 0
    total: float = 0.0
    low: Any = None
    high: Any = None
    last: Any = None

    def add(self, value: FieldValue) -> None:
        self.count += 1
        self.last = value
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.total += value
            self.low = value if self.low is None or value < self.low else self.low
            self.high = value if self.high is None or value > self.high else self.high


@dataclass(slots=True)
class _Window:
    start_ns: int
    fields: dict[str, _Stats] = field(default_factory=dict)


class Aggregator:
    """Pure: lines in, aggregated lines out; no clock but the frames' own timestamps."""

    def __init__(self, interval_s: float, functions: Sequence[str] = FUNCTIONS) -> None:
        unknown = set(functions) - set(FUNCTIONS)
        if unknown or not functions:
            raise ValueError(f"aggregation functions must be among {', '.join(FUNCTIONS)}; got {sorted(unknown)}")
        self.interval_ns = int(interval_s * 1e9)
        if self.interval_ns <= 0:
            raise ValueError("aggregation interval must be positive")
        self.functions = tuple(functions)
        self._windows: dict[tuple[str, tuple[tuple[str, str], ...]], _Window] = {}
        self.rejected: list[tuple[str, str]] = []  # (line, or window described; reason)

    def add_lines(self, lines: Iterable[str]) -> list[str]:
        """Account `lines` (each may hold several, newline-separated); return the windows they closed."""
        out: list[str] = []
        for text in lines:
            for line_no, line in iter_lines(text):
                try:
                    self._add(parse_line(line, line_no), out)
                except LineProtocolError as exc:
                    self.rejected.append((line, str(exc)))
        return out

    def take_rejected(self) -> list[tuple[str, str]]:
        """The lines and windows refused since the last call, with their reasons."""
        rejected, self.rejected = self.rejected, []
        return rejected

    def _add(self, point: Point, out: list[str]) -> None:
        if point.time_ns is None:
            return
        series = (point.measurement, tuple(sorted(point.tags.items())))
        start = point.time_ns - point.time_ns % self.interval_ns
        window = self._windows.get(series)
        if window is not None and window.start_ns != start:
            self._emit(series, window, out)
            window = None
        if window is None:
            window = self._windows[series] = _Window(start)
        for name, value in point.fields.items():
            stats = window.fields.get(name)
            if stats is None:
                stats = window.fields[name] = _Stats()
            stats.add(value)

    def flush_before(self, time_ns: int) -> list[str]:
        """Emit the windows that end at or before `time_ns`."""
        done = [s for s, w in self._windows.items() if w.start_ns + self.interval_ns <= time_ns]
        out: list[str] = []
        for series in done:
            self._emit(series, self._windows.pop(series), out)
        return out

    def flush_all(self) -> list[str]:
        out: list[str] = []
        for series, window in self._windows.items():
            self._emit(series, window, out)
        self._windows.clear()
        return out

    def _emit(self, series: tuple[str, tuple[tuple[str, str], ...]], window: _Window, out: list[str]) -> None:
        try:
            out.append(self._format(series, window))
        except LineProtocolError as exc:
            measurement, tags = series
            described = ",".join([measurement, *(f"{k}={v}" for k, v in tags)]) + f" window {window.start_ns}"
            self.rejected.append((described, str(exc)))

    def _format(self, series: tuple[str, tuple[tuple[str, str], ...]], window: _Window) -> str:
        fields: dict[str, FieldValue] = {}
        for name, stats in window.fields.items():
            numeric = stats.low is not None
            for function in self.functions:
                if function == "count":
                    fields[f"{name}_count"] = stats.count
                elif function == "last":
                    fields[f"{name}_last"] = stats.last
                elif numeric and function == "mean":
                    fields[f"{name}_mean"] = stats.total / stats.count
                elif numeric and function == "min":
                    fields[f"{name}_min"] = stats.low
                elif numeric and function == "max":
                    fields[f"{name}_max"] = stats.high
        measurement, tags = series
        return format_point(Point(measurement, dict(tags), fields, window.start_ns))

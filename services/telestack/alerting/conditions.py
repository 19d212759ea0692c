"""Conditions as pure code: what value a rule compares (raw, deviation, rate, window aggregate) and how.

A value condition is two parts:

- a *derivation* turns each new point into the compared number: the raw value (threshold), value minus
  setpoint (deviation), the slope over a window (rate), or mean/max/min/sum/count over a window (window);
- a *comparison* says when that number is active (above, below, outside a range, or ``|x| > max``) and when a
  firing alert is clear again: by default as soon as it is no longer active, or only once it came back by
  the hysteresis, or when a separate clear condition holds.

>>> cmp = comparison_for(ThresholdCondition(type="threshold", above=80, hysteresis=5))
>>> cmp.active(81), cmp.cleared(78), cmp.cleared(75)
(True, False, True)
>>> window = WindowAggregate("max", window_s=60)
>>> [window.add(t * 10**9, v) for t, v in [(0, 3.0), (30, 5.0), (80, 1.0)]]
[3.0, 5.0, 5.0]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from telestack.alerting.rules import (
    ClearSpec,
    DeviationCondition,
    RateCondition,
    ThresholdCondition,
    WindowCondition,
)

__all__ = ["Comparison", "RateTracker", "WindowAggregate", "comparison_for"]

NS = 1_000_000_000
Predicate = Callable[[float], bool]


@dataclass(frozen=True, slots=True)
class Comparison:
    """When a derived value is active, when a firing alert is clear, and the threshold to show people."""

    active: Predicate
    cleared: Predicate
    threshold: str


def _clear_predicate(spec: ClearSpec) -> Predicate:
    if spec.above is not None:
        above = spec.above
        return lambda x: x > above
    if spec.below is not None:
        below = spec.below
        return lambda x: x < below
    assert spec.inside is not None
    low, high = spec.inside
    return lambda x: low <= x <= high


def _number(value: float) -> str:
    return f"{value:g}"


def comparison_for(condition: ThresholdCondition | DeviationCondition | RateCondition | WindowCondition) -> Comparison:
    """The comparison a condition describes, with its hysteresis or clear condition."""
    h = condition.hysteresis or 0.0
    active: Predicate
    cleared: Predicate
    if isinstance(condition, DeviationCondition) and condition.max is not None:
        limit = condition.max
        inner = limit - h

        def active(x: float) -> bool:
            return abs(x) > limit

        def cleared(x: float) -> bool:
            return abs(x) <= inner

        shown = f"±{_number(limit)}"
    elif condition.above is not None:
        above = condition.above
        clear_at = above - h

        def active(x: float) -> bool:
            return x > above

        def cleared(x: float) -> bool:
            return x <= clear_at

        shown = _number(above)
    elif condition.below is not None:
        below = condition.below
        clear_at = below + h

        def active(x: float) -> bool:
            return x < below

        def cleared(x: float) -> bool:
            return x >= clear_at

        shown = _number(below)
    else:
        assert condition.outside is not None
        low, high = condition.outside
        clear_low, clear_high = low + h, high - h

        def active(x: float) -> bool:
            return x < low or x > high

        def cleared(x: float) -> bool:
            return clear_low <= x <= clear_high

        shown = f"{_number(low)}..{_number(high)}"
    if condition.clear is not None:
        cleared = _clear_predicate(condition.clear)
    return Comparison(active, cleared, shown)


class RateTracker:
    """Rate of change in units per `per_s`: over the last two points, or over a window of `window_s`."""

    __slots__ = ("_points", "_scale", "_window_ns")

    def __init__(self, per_s: float, window_s: float | None = None) -> None:
        self._scale = per_s * NS
        self._window_ns = int(window_s * NS) if window_s else None
        self._points: deque[tuple[int, float]] = deque()

    def add(self, t_ns: int, value: float) -> float | None:
        """Record a point; the rate so far, or None until there are two points apart in time."""
        points = self._points
        points.append((t_ns, value))
        if self._window_ns is None:
            while len(points) > 2:
                points.popleft()
        else:
            horizon = t_ns - self._window_ns
            while len(points) > 2 and points[1][0] <= horizon:
                points.popleft()
        t0, v0 = points[0]
        if t_ns <= t0:
            return None
        return (value - v0) * self._scale / (t_ns - t0)


class WindowAggregate:
    """mean / max / min / sum / count of the points of the last `window_s` seconds, updated in O(1) amortized."""

    __slots__ = ("_extreme", "_kind", "_points", "_sum", "_window_ns")

    def __init__(self, kind: str, window_s: float) -> None:
        if kind not in ("mean", "max", "min", "sum", "count"):
            raise ValueError(f"unknown aggregate {kind!r}")
        self._kind = kind
        self._window_ns = int(window_s * NS)
        self._points: deque[tuple[int, float]] = deque()
        self._extreme: deque[tuple[int, float]] = deque()  # monotonic, for max / min
        self._sum = 0.0

    def add(self, t_ns: int, value: float) -> float:
        """Record a point and return the aggregate over (t - window, t]."""
        kind = self._kind
        self._points.append((t_ns, value))
        self._sum += value
        if kind == "max":
            while self._extreme and self._extreme[-1][1] <= value:
                self._extreme.pop()
            self._extreme.append((t_ns, value))
        elif kind == "min":
            while self._extreme and self._extreme[-1][1] >= value:
                self._extreme.pop()
            self._extreme.append((t_ns, value))
        horizon = t_ns - self._window_ns
        while self._points[0][0] <= horizon:
            _, old = self._points.popleft()
            self._sum -= old
        while self._extreme and self._extreme[0][0] <= horizon:
            self._extreme.popleft()
        if kind == "mean":
            return self._sum / len(self._points)
        if kind == "sum":
            return self._sum
        if kind == "count":
            return float(len(self._points))
        return self._extreme[0][1]

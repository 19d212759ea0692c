"""Comparisons (hysteresis, clear conditions), rate of change and window aggregates."""

from __future__ import annotations

import pytest

from telestack.alerting.conditions import RateTracker, WindowAggregate, comparison_for
from telestack.alerting.rules import ClearSpec, DeviationCondition, RateCondition, ThresholdCondition

NS = 1_000_000_000


def test_above_with_hysteresis() -> None:
    cmp = comparison_for(ThresholdCondition(type="threshold", above=80, hysteresis=5))
    assert not cmp.active(80) and cmp.active(80.1)
    assert not cmp.cleared(76) and cmp.cleared(75)
    assert cmp.threshold == "80"


def test_below_default_clear_is_not_active() -> None:
    cmp = comparison_for(ThresholdCondition(type="threshold", below=1.0))
    assert cmp.active(0.9) and not cmp.active(1.0)
    assert cmp.cleared(1.0) and not cmp.cleared(0.99)


def test_outside_range_with_hysteresis() -> None:
    cmp = comparison_for(ThresholdCondition(type="threshold", outside=(10, 20), hysteresis=1))
    assert cmp.active(9.9) and cmp.active(20.1) and not cmp.active(15)
    assert not cmp.cleared(10.5) and cmp.cleared(11) and cmp.cleared(19) and not cmp.cleared(19.5)
    assert cmp.threshold == "10..20"


def test_separate_clear_condition() -> None:
    cmp = comparison_for(ThresholdCondition(type="threshold", below=1.0, clear=ClearSpec(above=1.5)))
    assert cmp.active(0.5)
    assert not cmp.cleared(1.2) and cmp.cleared(1.6)


def test_deviation_max_is_symmetric() -> None:
    cmp = comparison_for(DeviationCondition(type="deviation", setpoint=18, max=2, hysteresis=0.5))
    assert cmp.active(2.1) and cmp.active(-2.1) and not cmp.active(2.0)
    assert cmp.cleared(-1.5) and not cmp.cleared(1.6)
    assert cmp.threshold == "±2"


def test_conditions_need_exactly_one_comparison() -> None:
    with pytest.raises(ValueError):
        ThresholdCondition(type="threshold")
    with pytest.raises(ValueError):
        DeviationCondition(type="deviation", setpoint=1, max=1, above=2)
    with pytest.raises(ValueError):
        ThresholdCondition(type="threshold", above=1, hysteresis=1, clear=ClearSpec(below=0))
    with pytest.raises(ValueError):
        RateCondition(type="rate", outside=(5, 1))


def test_rate_between_last_two_points_per_minute() -> None:
    rate = RateTracker(per_s=60)
    assert rate.add(0, 10.0) is None
    assert rate.add(30 * NS, 11.0) == pytest.approx(2.0)  # +1 in 30 s = +2/min
    assert rate.add(60 * NS, 11.0) == pytest.approx(0.0)


def test_rate_over_window_uses_oldest_point_in_window() -> None:
    rate = RateTracker(per_s=1, window_s=10)
    rate.add(0, 0.0)
    rate.add(5 * NS, 5.0)
    assert rate.add(10 * NS, 10.0) == pytest.approx(1.0)
    # The anchor is the last point at or before the window's start (t=5 for a window starting at 6 s),
    # so the rate spans the whole window; the point at 0 s is gone.
    assert rate.add(16 * NS, 10.0) == pytest.approx((10.0 - 5.0) / 11)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("mean", [4.0, 5.0, 4.0, 2.0]),
        ("max", [4.0, 6.0, 6.0, 6.0]),
        ("min", [4.0, 4.0, 2.0, -2.0]),
        ("sum", [4.0, 10.0, 12.0, 6.0]),
        ("count", [1.0, 2.0, 3.0, 3.0]),
    ],
)
def test_window_aggregates(kind: str, expected: list[float]) -> None:
    window = WindowAggregate(kind, window_s=60)
    series = [(0, 4.0), (20, 6.0), (40, 2.0), (75, -2.0)]  # at 75 s, the point at 0 s has left the window
    assert [window.add(t * NS, v) for t, v in series] == pytest.approx(expected)


def test_window_max_forgets_old_extremes() -> None:
    window = WindowAggregate("max", window_s=10)
    assert window.add(0, 100.0) == 100.0
    assert window.add(5 * NS, 1.0) == 100.0
    assert window.add(11 * NS, 2.0) == 2.0

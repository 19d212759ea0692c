"""The bridge's cached line writer gives exactly what core's format_point gives, or refuses the same points."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telestack.core.errors import LineProtocolError
from telestack.core.lineproto import Point, UInt, format_lines, parse_lines
from telestack.mqtt_bridge.lines import LineWriter

names = st.text(min_size=0, max_size=8)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.booleans(),
    st.text(max_size=10),
    st.integers(min_value=0, max_value=2**64).map(UInt),
)
points = st.builds(
    Point,
    measurement=names,
    tags=st.dictionaries(names, names, max_size=3),
    fields=st.dictionaries(names, values, max_size=4),
    time_ns=st.one_of(st.none(), st.integers(min_value=0, max_value=2**62)),
)


def _reference(point: Point) -> str | type[LineProtocolError]:
    try:
        return format_lines([point])
    except LineProtocolError:
        return LineProtocolError


@settings(max_examples=400, deadline=None)
@given(st.lists(points, min_size=1, max_size=3))
def test_same_text_or_same_refusal_as_core(batch: list[Point]) -> None:
    writer = LineWriter()
    for _ in range(2):  # the second pass is served from the caches
        for point in batch:
            expected = _reference(point)
            if expected is LineProtocolError:
                with pytest.raises(LineProtocolError):
                    writer.format([point])
            else:
                assert writer.format([point]) == expected


def test_written_lines_parse_back() -> None:
    point = Point("fermenter", {"device": "f 1", "site": "a,b"}, {"temperature": 18.5, "status": 'say "hi"\\'}, 5)
    (parsed,) = parse_lines(LineWriter().format([point]))
    assert parsed == point


def test_non_finite_floats_are_refused_naming_the_field() -> None:
    with pytest.raises(LineProtocolError, match="temperature"):
        LineWriter().format([Point("m", {}, {"temperature": math.inf})])

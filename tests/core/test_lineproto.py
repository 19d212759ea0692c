"""Line protocol: examples of every rule, and hypothesis round trips."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telestack.core.errors import LineProtocolError
from telestack.core.lineproto import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    Point,
    UInt,
    format_lines,
    format_point,
    iter_lines,
    parse_line,
    parse_lines,
)


@pytest.mark.parametrize(
    ("point", "line"),
    [
        (Point("m", {}, {"v": 1.5}), "m v=1.5"),
        (Point("m", {"b": "2", "a": "1"}, {"v": 1.0}, 5), "m,a=1,b=2 v=1.0 5"),
        (
            Point("m", {}, {"i": -3, "u": UInt(7), "s": "x", "t": True, "f": False}),
            'm f=false,i=-3i,s="x",t=true,u=7u',
        ),
        (Point("a b,c", {}, {"v": 1.0}), r"a\ b\,c v=1.0"),
        (Point("m=x", {}, {"v": 1.0}), "m=x v=1.0"),
        (Point("m", {"k ,=": "v ,="}, {"v": 1.0}), r"m,k\ \,\==v\ \,\= v=1.0"),
        (Point("m", {}, {'f "k"': 1.0}), r"m f\ \"k\"=1.0"),
        (Point("m", {}, {"s": 'a "q" \\ b'}), r'm s="a \"q\" \\ b"'),
        (Point("m", {"path": r"C:\data"}, {"v": 1.0}), r"m,path=C:\data v=1.0"),
        (Point("m", {}, {"v": 1e300}), "m v=1e+300"),
        (Point("m", {}, {"v": 1.0}, -5), "m v=1.0 -5"),
        (Point("température", {"cuve": "n°1"}, {"état": "ok"}), 'température,cuve=n°1 état="ok"'),
    ],
)
def test_format_and_parse_examples(point: Point, line: str) -> None:
    assert format_point(point) == line
    assert parse_line(line) == point


@pytest.mark.parametrize(
    ("point", "reason"),
    [
        (Point("m", {}, {}), "at least one field"),
        (Point("", {}, {"v": 1.0}), "measurement must not be empty"),
        (Point("#m", {}, {"v": 1.0}), "comment"),
        (Point("\tm", {}, {"v": 1.0}), "tab"),
        (Point("m", {"": "x"}, {"v": 1.0}), "tag key must not be empty"),
        (Point("m", {"k": ""}, {"v": 1.0}), "must not be empty"),
        (Point("m", {"k": "a\nb"}, {"v": 1.0}), "newline"),
        (Point("m", {"k": "end\\"}, {"v": 1.0}), "backslash"),
        (Point("m", {"k": "a\\,b"}, {"v": 1.0}), "backslash"),
        (Point("m", {}, {"v": math.nan}), "not finite"),
        (Point("m", {}, {"v": math.inf}), "not finite"),
        (Point("m", {}, {"v": INT64_MAX + 1}), "int64"),
        (Point("m", {}, {"v": UInt(UINT64_MAX + 1)}), "uint64"),
        (Point("m", {}, {"v": [1]}), "unsupported type"),  # type: ignore[dict-item]
        (Point("m", {}, {"v": 1.0}, INT64_MAX + 1), "int64"),
        (Point("m", {}, {"s": "bad \ud800 text"}), "UTF-8"),
        (Point("m", {"k\udfff": "v"}, {"v": 1.0}), "UTF-8"),
    ],
)
def test_format_rejects_what_influxdb_cannot_store(point: Point, reason: str) -> None:
    with pytest.raises(LineProtocolError, match=reason):
        format_point(point)


def test_even_backslash_runs_before_specials_are_representable() -> None:
    point = Point("m", {"k": "a\\\\,b", "e": "x\\\\"}, {"v": 1.0})
    assert parse_line(format_point(point)) == point


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("m v=1", {"v": 1.0}),
        ("m v=-1.5e-3", {"v": -1.5e-3}),
        ("m v=.5", {"v": 0.5}),
        (
            "m a=t,b=T,c=TRUE,d=True,e=f,g=F,h=FALSE,i=False",
            dict.fromkeys("abcd", True) | dict.fromkeys("eghi", False),
        ),
        (f"m i={INT64_MIN}i,u={UINT64_MAX}u", {"i": INT64_MIN, "u": UInt(UINT64_MAX)}),
        ('m s=""', {"s": ""}),
        ('m s="a,b c=d"', {"s": "a,b c=d"}),
        ('m s="back\\slash"', {"s": "back\\slash"}),
    ],
)
def test_parse_field_types(line: str, expected: dict[str, object]) -> None:
    point = parse_line(line)
    assert point.fields == expected
    for key, value in expected.items():
        assert type(point.fields[key]) is type(value)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("m", "measurement|expected"),
        ("m,t=1", "measurement|expected"),
        ("m v=", "no value"),
        ("m v=1 x", "timestamp"),
        ("m v=1  5", "expected|timestamp"),
        ("m v=abc", "invalid value"),
        ("m v=1.5i", "invalid value"),
        ("m v=-1u", "invalid value"),
        (f"m v={INT64_MAX + 1}i", "overflows int64"),
        ('m s="open', "unterminated"),
        ('m s="a"x', "unexpected"),
        ("m,t v=1", "invalid tag"),
        ("m,=x v=1", "invalid tag"),
        ("m =1", "invalid field"),
        ("m v=1e999", "float64"),
        (f"m v=1 {INT64_MAX + 1}", "overflows"),
    ],
)
def test_parse_rejects_bad_lines(line: str, reason: str) -> None:
    with pytest.raises(LineProtocolError, match=reason):
        parse_line(line)


def test_parse_lines_reports_line_numbers_and_skips_comments() -> None:
    text = "# header\n\nm v=1 1\n  m v=2 2\r\n"
    assert [p.time_ns for p in parse_lines(text)] == [1, 2]
    with pytest.raises(LineProtocolError, match="line 3") as info:
        parse_lines("m v=1\n# c\nbroken\n")
    assert info.value.line_no == 3
    assert info.value.line == "broken"


def test_newline_inside_string_field_stays_in_its_line() -> None:
    text = 'm s="two\nlines" 1\nm v=1 2\n'
    assert list(iter_lines(text)) == [(1, 'm s="two\nlines" 1'), (3, "m v=1 2")]
    assert parse_lines(text)[0].fields["s"] == "two\nlines"


# --- round trips --------------------------------------------------------------------------------------------

_names = st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), min_size=1, max_size=12)
_field_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(INT64_MIN, INT64_MAX),
    st.integers(0, UINT64_MAX).map(UInt),
    st.text(st.characters(codec="utf-8"), max_size=20),
    st.booleans(),
)
_points = st.builds(
    Point,
    measurement=_names,
    tags=st.dictionaries(_names, _names, max_size=4),
    fields=st.dictionaries(_names, _field_values, min_size=1, max_size=5),
    time_ns=st.one_of(st.none(), st.integers(INT64_MIN, INT64_MAX)),
)


def _formattable(point: Point) -> str | None:
    try:
        return format_point(point)
    except LineProtocolError:
        return None


@given(_points)
def test_round_trip(point: Point) -> None:
    line = _formattable(point)
    if line is None:  # names with unrepresentable backslashes: rejected, never written wrongly
        return
    parsed = parse_line(line)
    assert parsed == point
    assert {k: type(v) for k, v in parsed.fields.items()} == {k: type(v) for k, v in point.fields.items()}


@given(st.lists(_points, max_size=8))
def test_round_trip_many(points: list[Point]) -> None:
    good = [p for p in points if _formattable(p) is not None]
    assert parse_lines(format_lines(good)) == good


@given(st.text(max_size=80))
def test_parser_never_crashes_on_garbage(text: str) -> None:
    with contextlib.suppress(LineProtocolError):
        parse_lines(text)


def test_quotes_in_tags_and_escaped_backslashes_do_not_confuse_line_splitting() -> None:
    text = 'm,t=a"b s="ends with \\\\" 1\nm,t=x s="two\nlines",v=1 2\nm v=3 3\n'
    points = parse_lines(text)
    assert [p.time_ns for p in points] == [1, 2, 3]
    assert points[0].tags == {"t": 'a"b'} and points[0].fields == {"s": "ends with \\"}
    assert points[1].fields == {"s": "two\nlines", "v": 1.0}

"""Hostile text through the line-protocol parser (`telestack.core.lineproto`), which the bridge's ``line``
rules and the actuator's ingest use to decide what passes: a bad line is refused with its reason, never
with another exception, and what is accepted survives a format → parse round trip unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telestack.core.errors import LineProtocolError
from telestack.core.lineproto import Point, UInt, format_point, parse_line, parse_lines
from tests.hostile import corpus

CASES = corpus.load("lineproto.yaml")


@pytest.mark.parametrize("case", CASES, ids=corpus.ids(CASES))
def test_corpus_lines_are_refused_with_their_reason_or_round_trip(case: dict[str, Any]) -> None:
    line = case["line"]
    if case["reason"] is None:
        point = parse_line(line)
        assert parse_line(format_point(point)) == point
        return
    with pytest.raises(LineProtocolError) as info:
        parse_line(line)
    assert case["reason"] in info.value.reason


def test_a_bad_line_in_a_block_is_named_by_its_number() -> None:
    with pytest.raises(LineProtocolError) as info:
        parse_lines("m v=1\n# comment\nm v=2\nm v=\nm v=4\n")
    assert info.value.line_no == 4
    assert info.value.line == "m v="


def test_huge_lines_parse_in_linear_time() -> None:
    fields = ",".join(f"f{i}={i}i" for i in range(20_000))
    (point,) = parse_lines(f"m,t=a {fields} 1\n")
    assert len(point.fields) == 20_000
    with pytest.raises(LineProtocolError):
        parse_line('m v="' + "x" * 1_000_000)  # unterminated, a megabyte long


# Characters that matter to the grammar, plus some that should not.
GRAMMAR = st.sampled_from([*list('ab =,"\\\n\r\t#0123456789.eEiutfTF-+'), "é", "\x00", "😀"])


@pytest.mark.slow  # a large property-based campaign
@settings(max_examples=3000, deadline=None)
@given(st.text(GRAMMAR, max_size=48))
def test_any_text_is_parsed_or_refused_never_crashes(text: str) -> None:
    try:
        points = parse_lines(text)
    except LineProtocolError as exc:
        assert exc.reason
        return
    for point in points:
        try:
            line = format_point(point)
        except LineProtocolError:
            continue  # parsed but not writable back (e.g. a bare \r in a name): refused, not mangled
        assert parse_line(line) == point


NAMES = st.text(min_size=1, max_size=10)
FIELD_VALUES = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.integers(min_value=0, max_value=2**64 - 1).map(UInt)
    | st.booleans()
    | st.text(max_size=20)
)


@pytest.mark.slow  # a large property-based campaign
@settings(max_examples=1500, deadline=None)
@given(
    measurement=NAMES,
    tags=st.dictionaries(NAMES, NAMES, max_size=3),
    fields=st.dictionaries(NAMES, FIELD_VALUES, min_size=1, max_size=4),
    time_ns=st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_any_point_is_written_exactly_or_refused(
    measurement: str, tags: dict[str, str], fields: dict[str, Any], time_ns: int | None
) -> None:
    point = Point(measurement, tags, fields, time_ns)
    try:
        line = format_point(point)
    except LineProtocolError as exc:
        assert exc.reason
        return
    assert parse_lines(line + "\n") == [point]

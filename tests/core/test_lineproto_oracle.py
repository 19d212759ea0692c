"""`telestack.core.lineproto` against InfluxDB 2.7.12's own parser: the same points, or both refuse.

The oracle is `lineproto-oracle`, built by ``make setup`` (``telestack native install``) from InfluxDB's Go
module; without it these tests fail (they do not skip): a codec that nobody checked is the bug they look for.
Inputs: InfluxData's line-protocol corpus and the string literals of InfluxDB's ``models/points_test.go``
(``tests/data/lineproto/``), 100k+ generated lines, and generated points for the serializer.
Where InfluxDB's parser accepts what its storage drops, we must refuse: see ``tests/core/lineproto_oracle.py``.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telestack.actuator.ingest import _parse_line_protocol
from telestack.core.errors import LineProtocolError
from telestack.core.lineproto import FieldValue, Point, UInt, format_point, iter_lines, parse_line, parse_lines
from telestack.native.oracle import lineproto_oracle_path
from tests.core.lineproto_oracle import Answer, Oracle, expected, same_points

pytestmark = pytest.mark.oracle

DATA = Path(__file__).parents[1] / "data" / "lineproto"
SEED = int(os.environ.get("TELESTACK_LINEPROTO_SEED", "20261130"))
GENERATED_LINES = int(os.environ.get("TELESTACK_LINEPROTO_LINES", "100000"))


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    path = lineproto_oracle_path()
    if not path.exists():
        pytest.fail(
            f"InfluxDB's line-protocol parser (lineproto-oracle) is not built at {path}: run `make setup` "
            "(telestack native install builds it in seconds once InfluxDB's Go modules are cached)",
            pytrace=False,
        )
    return Oracle(path)


# --- comparing one input --------------------------------------------------------------------------------


def disagreement(text: str, answer: Answer) -> str | None:
    """None when we read `text` as InfluxDB does (after its storage rules); otherwise what differs."""
    points, error = expected(answer)
    must_refuse = error is not None or any(isinstance(p, str) for p in points)
    try:
        ours: list[Point] | None = parse_lines(text)
        our_error = None
    except LineProtocolError as exc:
        ours, our_error = None, exc.reason
    except Exception as exc:  # a crash is a disagreement too
        return f"parse_lines crashed: {exc!r}"
    if must_refuse and ours is not None:
        why = error or next(p for p in points if isinstance(p, str))
        return f"we accept {ours} where InfluxDB refuses: {why}"
    if not must_refuse:
        if ours is None:
            return f"we refuse ({our_error}) what InfluxDB reads as {points}"
        if not same_points(ours, points):  # type: ignore[arg-type]
            return f"we read {ours}, InfluxDB reads {points}"
    # Line by line (what the writer's bisection and alerting do): the good lines around a bad one.
    good: list[Point] = []
    try:
        for line_no, line in iter_lines(text):
            with contextlib.suppress(LineProtocolError):
                good.append(parse_line(line, line_no))
    except Exception as exc:
        return f"iter_lines/parse_line crashed: {exc!r}"
    theirs = [p for p in points if isinstance(p, Point)]
    if not same_points(good, theirs):
        return f"line by line we keep {good}, InfluxDB keeps {theirs}"
    return None


def check_all(oracle: Oracle, texts: Sequence[str]) -> list[str]:
    answers = oracle.ask(texts)
    problems = []
    for text, answer in zip(texts, answers, strict=True):
        problem = disagreement(text, answer)
        if problem is not None:
            problems.append(f"{text!r}: {problem}")
    return problems


def report(problems: list[str], total: int) -> str:
    shown = "\n".join(f"  {p[:400]}" for p in problems[:20])
    return f"{len(problems)} of {total} inputs read differently from InfluxDB 2.7.12:\n{shown}"


# --- reference cases ------------------------------------------------------------------------------------


def corpus_decode() -> list[dict[str, str]]:
    with gzip.open(DATA / "corpus-decode.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_line_protocol_corpus_reads_as_influxdb_does(oracle: Oracle) -> None:
    cases = corpus_decode()
    texts = [c["text"] for c in cases if "text" in c and c["precision"] == "ns"]
    # Inputs that are not UTF-8 never reach the codec: every entry point decodes strictly and dead-letters.
    not_utf8 = [c for c in cases if "b64" in c]
    assert all(_not_utf8(base64.b64decode(c["b64"])) for c in not_utf8)
    assert len(texts) + len(not_utf8) + sum(c["precision"] != "ns" for c in cases if "text" in c) == len(cases)
    problems = check_all(oracle, texts)
    assert not problems, report(problems, len(texts))


def test_line_protocol_corpus_with_precision_reads_as_influxdb_does(oracle: Oracle) -> None:
    """The few corpus inputs in s/ms/us, through the HTTP ingest (the one caller with a precision)."""
    cases = [c for c in corpus_decode() if "text" in c and c["precision"] != "ns"]
    assert cases
    for case in cases:
        [answer] = oracle.ask([case["text"]], precision=case["precision"])
        points, error = expected(answer)
        parsed = list(_parse_line_protocol(case["text"].encode(), case["precision"]))
        ours = [p for _, p in parsed if isinstance(p, Point)]
        if error is None and all(isinstance(p, Point) for p in points):
            assert len(ours) == len(parsed), case
        assert same_points(ours, [p for p in points if isinstance(p, Point)]), case


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_influxdb_models_test_strings_read_as_influxdb_does(oracle: Oracle) -> None:
    texts = [json.loads(line)["text"] for line in (DATA / "influxdb-models-points_test.jsonl").open(encoding="utf-8")]
    texts = [t for t in texts if isinstance(t, str)]
    assert len(texts) > 500
    problems = check_all(oracle, texts)
    assert not problems, report(problems, len(texts))


# --- generated lines ------------------------------------------------------------------------------------

# Pieces that meet InfluxDB's parser's corner cases: escapes, quotes, separators, types, limits.
NAME_BITS = ["cpu", "a", "b", "é", "✓", "x y", " ", ",", "=", '"', "\\", "\\\\", "\\ ", "\\,", "\\=", '\\"']
NAME_BITS += ["\t", "\x00", "#", "time", "_field", "_measurement", "i", "1", "-", "\r", "t"]
VALUES = ["1", "-1.5", "1e5", "1E-5", "1.", ".5", "-.5", "1i", "-0i", "0u", "42u", "007i", "t", "T", "true", "True"]
VALUES += ["TRUE", "f", "false", "False", "FALSE", "tru", '""', '"s"', '"a\\"b"', '"a\\\\"', '"a\\\\\\"b"', '"x\\"']
VALUES += ['"un', '"x"y', '"a,b c=d"', '"line\nbreak"', "", "-", "NaN", "nan", "inf", "1e400", "1e-400", "0x10"]
VALUES += ["9223372036854775807i", "9223372036854775808i", "-9223372036854775808i", "-9223372036854775809i"]
VALUES += ["18446744073709551615u", "18446744073709551616u", "-1u", "1.5i", "1e3i", "1u2", "--1", "1e+", "+1"]
VALUES += ["179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000"
           "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
           "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
           "00000000000000000000000000000000000000000"]  # fmt: skip
TIMES = ["1", "0", "-1", "01", "1700000000000000000", "9223372036854775806", "9223372036854775807"]
TIMES += [
    "-9223372036854775806",
    "-9223372036854775807",
    "-9223372036854775808",
    "",
    "-",
    "1.5",
    "1i",
    "99999999999999999999",
]
SEPARATORS = [" "] * 12 + ["  ", "\t", " \t", "\x00", ""]
MUTATIONS = [" ", ",", "=", '"', "\\", "\n", "\t", "#", "\r", "\x00", "é"]


def _name(rnd: random.Random) -> str:
    return "".join(rnd.choice(NAME_BITS) for _ in range(rnd.choice((1, 1, 1, 2, 3))))


def _line(rnd: random.Random) -> str:
    parts = [_name(rnd)]
    for _ in range(rnd.choice((0, 0, 1, 2, 3))):
        parts.append(f",{_name(rnd)}={_name(rnd)}")
    parts.append(rnd.choice(SEPARATORS))
    parts.append(",".join(f"{_name(rnd)}={rnd.choice(VALUES)}" for _ in range(rnd.choice((1, 1, 2, 3)))))
    if rnd.random() < 0.6:
        parts.append(rnd.choice(SEPARATORS) + rnd.choice(TIMES))
    if rnd.random() < 0.1:
        parts.append(rnd.choice(SEPARATORS))
    line = "".join(parts)
    for _ in range(rnd.choice((0, 0, 0, 1, 2))):
        i = rnd.randrange(len(line) + 1)
        line = line[:i] + rnd.choice(MUTATIONS) + line[i + rnd.choice((0, 1)) :]
    if rnd.random() < 0.05:
        line = rnd.choice(("# ", "#", "  ", "\t", '# don"t ', "# a=b,c=", '# x="')) + line
    return line


def generated_texts(rnd: random.Random, lines: int) -> Iterable[str]:
    made = 0
    while made < lines:
        n = rnd.choice((1, 1, 1, 2, 3))
        made += n
        yield rnd.choice(("\n", "\n", "\n", "\r\n", "\n\n")).join(_line(rnd) for _ in range(n))


def test_generated_lines_read_as_influxdb_does(oracle: Oracle) -> None:
    texts = list(generated_texts(random.Random(SEED), GENERATED_LINES))
    problems = check_all(oracle, texts)
    assert not problems, report(problems, len(texts)) + f"\n(seed {SEED}; TELESTACK_LINEPROTO_SEED to vary)"


# --- the serializer -------------------------------------------------------------------------------------


def _as_read_back(point: Point) -> Point:
    """An int beyond int64 is written as uint64 (``u``), so it reads back as `UInt`."""
    fields = {k: UInt(v) if type(v) is int and v > 2**63 - 1 else v for k, v in point.fields.items()}
    return Point(point.measurement, dict(point.tags), fields, point.time_ns)


def check_round_trip(oracle: Oracle, points: Sequence[Point]) -> tuple[list[str], int]:
    """Every point we format reads back through InfluxDB's parser as exactly that point; count refusals."""
    lines: list[str] = []
    written: list[Point] = []
    refused = 0
    for point in points:
        try:
            lines.append(format_point(point))
        except LineProtocolError:
            refused += 1
            continue
        written.append(point)
    problems = []
    for point, line, answer in zip(written, lines, oracle.ask(lines), strict=True):
        read, error = expected(answer)
        refused_by_influxdb = error is not None or any(isinstance(p, str) for p in read)
        if refused_by_influxdb or len(read) != 1 or not same_points(read, [_as_read_back(point)]):  # type: ignore[arg-type]
            problems.append(f"{point} → {line!r} → InfluxDB reads {read or error}")
    return problems, refused


TEXT_BITS = (
    ["a", "Z", "é", "✓", "\U0001f600", " ", ",", "=", '"', "time"] * 6 + ["\\"] * 3 + ["\t", "\x00", "\n", "\r", "#"]
)


def _text(rnd: random.Random, empty: bool = False) -> str:
    n = rnd.choice((0, 1, 1, 2, 3, 5)) if empty else rnd.choice((1, 1, 2, 3, 5))
    return "".join(rnd.choice(TEXT_BITS) for _ in range(n))


def _field_value(rnd: random.Random) -> FieldValue:
    kind = rnd.randrange(8)
    if kind == 0:
        return rnd.choice(
            (0.0, -0.0, 1.5, -1e-300, 5e-324, 1.7976931348623157e308, 1e16, 0.1, float("nan"), float("inf"))
        )
    if kind == 1:
        return rnd.uniform(-1e6, 1e6)
    if kind == 2:
        return rnd.choice((0, -1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, -(2**63) - 1))
    if kind == 3:
        return rnd.randrange(-(2**40), 2**40)
    if kind == 4:
        return UInt(rnd.choice((0, 1, 2**63, 2**64 - 1)))
    if kind == 5:
        return rnd.choice((True, False))
    return _text(rnd, empty=True)


def random_point(rnd: random.Random) -> Point:
    tags = {_text(rnd): _text(rnd) for _ in range(rnd.choice((0, 1, 2)))}
    fields = {_text(rnd): _field_value(rnd) for _ in range(rnd.choice((1, 1, 2, 3)))}
    time_ns = rnd.choice((None, 0, 1, -1, 2**63 - 2, -(2**63) + 2, 1_700_000_000 * 10**9, 2**63 - 1, -(2**63) + 1))
    if time_ns is not None and abs(time_ns) > 2**63 - 2 and rnd.random() < 0.8:
        time_ns = rnd.randrange(-(2**63) + 2, 2**63 - 1)
    return Point(_text(rnd), tags, fields, time_ns)


def test_formatted_points_read_back_exactly(oracle: Oracle) -> None:
    rnd = random.Random(SEED)
    points = [random_point(rnd) for _ in range(30_000)]
    problems, refused = check_round_trip(oracle, points)
    assert not problems, report(problems, len(points) - refused)
    # About half are refused by design (NaN, out-of-range numbers and times, newlines, names ending in a
    # backslash, ...): the alphabet is made of the hard cases. Far more would mean over-cautious refusals.
    assert refused < len(points) * 0.6, f"{refused} of {len(points)} refused: the serializer refuses too much"


def test_plain_points_are_never_refused(oracle: Oracle) -> None:
    plain = [
        Point("fermenter", {"device": "f1", "site": "brasserie"}, {"temperature": 18.5, "relay": True}, 1),
        Point("my meas", {"a=b": "c,d", "x y": "=v"}, {"msg": 'say "hi"\n', "n": -3, "u": UInt(2**64 - 1)}, None),
        Point("CAN", {"bus": "can0"}, {"big": 2**64 - 1, "neg": -(2**63)}, 2**63 - 2),
        Point("back\\slash", {"path": "C:\\temp\\x"}, {"s": "a\\b\\\\c\\", "f\\g": 1.0}, -(2**63) + 2),
    ]
    problems, refused = check_round_trip(oracle, plain)
    assert (problems, refused) == ([], 0)


def test_corpus_points_format_as_influxdb_reads_them(oracle: Oracle) -> None:
    points = []
    for line in (DATA / "corpus-encode.jsonl").open(encoding="utf-8"):
        case = json.loads(line)
        if case["precision"] != "ns":
            continue
        doc = case["point"]
        tags = {t["key"]: t["value"] for t in doc["tags"] or []}
        fields: dict[str, FieldValue] = {}
        for f in doc["fields"] or []:
            [(kind, value)] = f["value"].items()
            fields[f["key"]] = UInt(value) if kind == "uint" else value
        points.append(Point(doc["name"], tags, fields, doc["time"]))
    problems, refused = check_round_trip(oracle, points)
    assert not problems, report(problems, len(points) - refused)


names = st.lists(st.sampled_from([*TEXT_BITS, "b", "1"]), min_size=1, max_size=5).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    measurement=names,
    tags=st.dictionaries(names, names, max_size=3),
    fields=st.dictionaries(
        names,
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(2**64), 2**64),
            st.booleans(),
            st.text(max_size=8),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_hypothesis_points_read_back_exactly(
    oracle: Oracle, measurement: str, tags: dict[str, str], fields: dict[str, FieldValue]
) -> None:
    problems, _ = check_round_trip(oracle, [Point(measurement, tags, fields, 1)])
    assert not problems, problems

"""Hostile MQTT payloads through the bridge's mapping (`telestack.mqtt_bridge.mapping.map_message`).

Whatever a device sends, mapping either makes line protocol that InfluxDB can read and Kafka can carry
(UTF-8), or refuses with a `MappingError` whose reason is one of the dead-letter reasons. Nothing else may
come out of it: any other exception escapes the bridge's MQTT callback and stops the service, and since the
message is never acknowledged the broker hands it over again after the restart (a poison message).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telestack.core.lineproto import parse_lines
from telestack.mqtt_bridge.errors import REASONS, MappingError
from telestack.mqtt_bridge.mapping import map_message
from telestack.mqtt_bridge.rules import RuleSet, load_rules
from telestack.mqtt_bridge.settings import BridgeOptions
from tests.hostile import corpus

NOW_S = 1_700_000_000.0
NOW_NS = int(NOW_S * 1e9)
RULES = load_rules(corpus.DATA / "mqtt_rules.yaml")
SHIPPED_RULES = load_rules(Path(__file__).resolve().parents[2] / "config" / "mqtt-bridge.yaml")
MAX_PAYLOAD = BridgeOptions().max_payload_bytes
CASES = corpus.load("mqtt_payloads.yaml")
TOKENS = corpus.time_tokens(NOW_S, 1_000)


def outcome(rules: RuleSet, topic: str, payload: bytes) -> tuple[str, str]:
    """('written', lines) or (dead-letter reason, detail), as the bridge decides; fails on anything else."""
    if len(payload) > MAX_PAYLOAD:
        return "oversize", f"{len(payload)} bytes"  # the bridge checks the size before mapping
    try:
        mapped = map_message(rules, topic, payload, NOW_NS)
    except MappingError as exc:
        assert exc.reason in REASONS, exc
        assert exc.detail, "a dead letter says why"
        return exc.reason, exc.detail
    # What the bridge hands to Kafka must be UTF-8 and line protocol that InfluxDB reads.
    try:
        mapped.value.encode("utf-8")
    except UnicodeEncodeError as exc:
        pytest.fail(f"mapped to text Kafka cannot carry ({exc}): {mapped.value[:200]!r}")
    try:
        points = parse_lines(mapped.value)
    except ValueError as exc:
        pytest.fail(f"mapped to line protocol InfluxDB refuses ({exc}): {mapped.value[:200]!r}")
    assert len(points) == mapped.points
    return "written", mapped.value


@pytest.mark.parametrize("case", CASES, ids=corpus.ids(CASES))
def test_every_corpus_payload_is_written_or_dead_lettered_with_its_reason(case: dict[str, Any]) -> None:
    payload = corpus.build(case, "payload", TOKENS)
    got, detail = outcome(RULES, case["topic"], payload)
    assert got == case["expect"], f"{case['name']}: {got} ({detail[:300]})"


def test_source_timestamps_a_day_off_are_kept_as_sent() -> None:
    """Clock skew is the device's business: its timestamp is stored as it is, never 'corrected'."""
    for name, offset_ms in (("clock_one_day_behind", -86_400_000), ("clock_one_day_ahead", 86_400_000)):
        case = next(c for c in CASES if c["name"] == name)
        mapped = map_message(RULES, case["topic"], corpus.build(case, "payload", TOKENS), NOW_NS)
        (point,) = parse_lines(mapped.value)
        assert point.time_ns == (int(NOW_S * 1000) + offset_ms) * 1_000_000


# --- generated payloads ---------------------------------------------------------------------------------

SURROGATES = st.sampled_from(["\ud800", "\udfff", "a\udc80b"])
TEXT = st.text(max_size=12) | SURROGATES
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=10**300, max_value=10**320)  # beyond float64
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=16,
)
TOPICS = st.sampled_from(
    [
        "hostile/json/d1",
        "hostile/jsonnow/d1",
        "hostile/tasmota/d1",
        "hostile/value/d1/v",
        "hostile/typed/d1/count",
        "hostile/typed/d1/relay",
        "hostile/line/d1",
        "teleinfo/meter-1",
        "plugs/p1/report",
        "tele/t1/SENSOR",
        "fermenters/f1/temperature",
        "telegraf/box/cpu",
        "nowhere/at/all",
    ]
)


def _document(value: Any, timestamp: Any) -> bytes:
    if isinstance(value, dict):
        value = {**value, "seq": 1, "ts": timestamp, "Time": timestamp}
    text = json.dumps(value, allow_nan=True)  # NaN and Infinity as devices that use these libraries send them
    return text.encode("utf-8", "surrogatepass")  # json escapes lone surrogates: ASCII, so this never fails


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=TOPICS,
    value=JSON_VALUES,
    timestamp=st.one_of(
        st.integers(min_value=-(2**64), max_value=2**64),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=25),
        st.sampled_from(["2024-01-15T10:23:45", "9999-12-31T23:59:59", "0001-01-01T00:00:00+14:00"]),
    ),
)
def test_generated_json_documents_never_escape_the_mapping(topic: str, value: Any, timestamp: Any) -> None:
    for rules in (RULES, SHIPPED_RULES):
        outcome(rules, topic, _document(value, timestamp))


@settings(max_examples=300, deadline=None)
@given(topic=TOPICS, payload=st.binary(max_size=64))
def test_arbitrary_bytes_never_escape_the_mapping(topic: str, payload: bytes) -> None:
    for rules in (RULES, SHIPPED_RULES):
        outcome(rules, topic, payload)


LINE_CHARS = st.sampled_from([*list('m v=1,t\\ "\n\r#0.5eEiu-'), "é", "\x00"])


@settings(max_examples=300, deadline=None)
@given(text=st.text(LINE_CHARS, max_size=40))
def test_generated_line_protocol_payloads_are_passed_on_only_when_valid(text: str) -> None:
    got, detail = outcome(RULES, "hostile/line/d1", text.encode())
    assert got in ("written", "unparseable", "invalid")
    if got == "written":
        assert all(math.isfinite(v) for p in parse_lines(detail) for v in p.fields.values() if isinstance(v, float))


def test_mapping_a_hostile_payload_stays_fast() -> None:
    """Deep, wide or huge payloads are refused or mapped in bounded time (no quadratic blow-up)."""
    heavy = [c for c in CASES if {"repeat", "nest", "wide_object"} & set(c)]
    for case in heavy:
        payload = corpus.build(case, "payload", TOKENS)
        started = time.perf_counter()
        with contextlib.suppress(Exception):  # what comes out is the corpus test's business; here only time
            map_message(RULES, case["topic"], payload, NOW_NS)
        assert time.perf_counter() - started < 2.0, case["name"]

"""Mapping as pure functions: the seeds' real payloads through the shipped rules, and every option and error."""

from __future__ import annotations

import json

import pytest

from telestack.core.lineproto import UInt, parse_lines
from telestack.mqtt_bridge.errors import MappingError
from telestack.mqtt_bridge.mapping import coerce, flatten, map_message, map_value_text, parse_timestamp
from telestack.mqtt_bridge.rules import RuleSet, TimestampSpec, parse_rules
from tests.mqtt_bridge.conftest import SeedCase, seed_cases

ARRIVAL = 1_700_000_123_456_789_000


@pytest.mark.parametrize("case", seed_cases(), ids=lambda c: c.name)
def test_seed_payloads_map_to_the_expected_line_protocol(shipped_rules: RuleSet, case: SeedCase) -> None:
    mapped = map_message(shipped_rules, case.topic, case.payload, ARRIVAL)
    assert mapped.key == case.key
    assert mapped.value == case.expected(ARRIVAL)
    assert mapped.points == len(case.lines)
    parse_lines(mapped.value)  # and InfluxDB-readable


def _rules(rule: str) -> RuleSet:
    return parse_rules("rules:\n  - " + rule)


def test_json_arrays_of_objects_give_one_point_each() -> None:
    rules = _rules("{name: r, topic: 'batch/{device}', measurement: m, timestamp: {field: ts, format: unix}}")
    payload = json.dumps([{"ts": 1700000000, "v": 1}, {"ts": 1700000001.5, "v": 2}]).encode()
    mapped = map_message(rules, "batch/d1", payload, ARRIVAL)
    assert mapped.value == "m,device=d1 v=1.0 1700000000000000000\nm,device=d1 v=2.0 1700000001500000000\n"
    assert mapped.points == 2


def test_nested_arrays_are_flattened_with_indexes() -> None:
    rules = _rules("{name: r, topic: x, measurement: m, separator: '.'}")
    mapped = map_message(rules, "x", b'{"phases": [{"v": 230.1}, {"v": 229.9}], "ok": true}', ARRIVAL)
    assert mapped.value == f"m ok=true,phases.0.v=230.1,phases.1.v=229.9 {ARRIVAL}\n"
    assert mapped.key == "x"  # no {device} level: the topic is the device id


def test_field_selection_with_renames_and_exclusion() -> None:
    rules = _rules("{name: r, topic: x, measurement: m, fields: {power: watts, relay: switched}, exclude: [relay]}")
    mapped = map_message(rules, "x", b'{"power": 5, "relay": true, "temperature": 20}', ARRIVAL)
    assert mapped.value == f"m watts=5.0 {ARRIVAL}\n"


def test_tag_keys_become_tags_and_static_tags_are_added() -> None:
    rules = _rules("{name: r, topic: 'm/{device}', measurement: m, tags: {site: lab}, tag_keys: [id, missing]}")
    mapped = map_message(rules, "m/d", b'{"id": 7, "v": 1}', ARRIVAL)
    assert mapped.value == f"m,id=7,site=lab v=1.0 {ARRIVAL}\n"  # explicit tags replace the default ones


def test_type_coercion_failure_is_invalid_and_names_the_field() -> None:
    rules = _rules("{name: r, topic: x, measurement: m, types: {PAPP: int}}")
    with pytest.raises(MappingError, match="PAPP") as err:
        map_message(rules, "x", b'{"PAPP": "lots"}', ARRIVAL)
    assert (err.value.reason, err.value.rule) == ("invalid", "r")


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("nowhere/at/all", b"1", "unmapped"),
        ("j/d", b"{not json", "unparseable"),
        ("j/d", b"\xff\xfe", "unparseable"),
        ("j/d", b"42", "invalid"),
        ("j/d", b"[]", "invalid"),
        ("j/d", b'{"a": null}', "invalid"),  # nothing left to write
        ("j/d", b'{"a": NaN}', "invalid"),
        ("t/d", b'{"v": 1}', "invalid"),  # timestamp key missing
        ("t/d", b'{"ts": "yesterday", "v": 1}', "invalid"),
        ("v/d", b"", "unparseable"),
        ("v/d", b"inf", "invalid"),
        ("l/d", b"not line protocol", "unparseable"),
        ("l/d", b"\n# only a comment\n", "unparseable"),
    ],
)
def test_bad_messages_raise_mapping_errors_with_a_reason(topic: str, payload: bytes, reason: str) -> None:
    rules = parse_rules(
        """
rules:
  - {name: json, topic: "j/{device}", measurement: m}
  - {name: timed, topic: "t/{device}", measurement: m, timestamp: {field: ts}}
  - {name: value, topic: "v/{device}", format: value, measurement: m}
  - {name: line, topic: "l/{device}", format: line}
"""
    )
    with pytest.raises(MappingError) as err:
        map_message(rules, topic, payload, ARRIVAL)
    assert err.value.reason == reason
    assert err.value.rule == (None if reason == "unmapped" else err.value.rule)
    assert err.value.detail


def test_plain_values_without_a_type() -> None:
    assert map_value_text("21.50", None) == 21.5
    assert map_value_text("-3", None) == -3.0
    assert map_value_text("off", None) is False
    assert map_value_text("TRUE", None) is True
    assert map_value_text("online", None) == "online"


def test_plain_values_with_a_type() -> None:
    assert map_value_text("1", "bool") is True
    assert map_value_text("42", "int") == 42
    assert map_value_text("42", "uint") == UInt(42)
    assert map_value_text("42", "string") == "42"
    with pytest.raises(MappingError, match="not a valid float"):
        map_value_text("warm", "float")


@pytest.mark.parametrize(
    ("value", "field_type", "expected"),
    [
        (130, "int", 130),
        (130.0, "int", 130),
        ("1875395", "int", 1875395),
        ("2e3", "int", 2000),
        (5, "uint", UInt(5)),
        (True, "float", 1.0),
        ("18.5", "float", 18.5),
        (0, "bool", False),
        ("On", "bool", True),
        (12.0, "string", "12"),
        (False, "string", "false"),
    ],
)
def test_coerce(value: object, field_type: str, expected: object) -> None:
    result = coerce(value, field_type, "f")  # type: ignore[arg-type]
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "field_type"),
    [(1.5, "int"), (-1, "uint"), (2**64, "int"), (2, "bool"), ("maybe", "bool"), ("x", "float"), (None, "float")],
)
def test_coerce_refuses(value: object, field_type: str) -> None:
    with pytest.raises(MappingError):
        coerce(value, field_type, "f")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "spec", "expected"),
    [
        (1700000000, {"format": "unix"}, 1_700_000_000_000_000_000),
        ("1700000000", {"format": "unix"}, 1_700_000_000_000_000_000),
        (1700000000.25, {"format": "unix"}, 1_700_000_000_250_000_000),
        (1700000000123, {"format": "unix_ms"}, 1_700_000_000_123_000_000),
        (1700000000123456, {"format": "unix_us"}, 1_700_000_000_123_456_000),
        (1700000000123456789, {"format": "unix_ns"}, 1_700_000_000_123_456_789),
        ("2023-11-14T22:13:20Z", {}, 1_700_000_000_000_000_000),
        ("2023-11-14T23:13:20.5+01:00", {}, 1_700_000_000_500_000_000),
        ("2023-11-14T23:13:20", {"timezone": "Europe/Paris"}, 1_700_000_000_000_000_000),
        ("14/11/2023 22:13:20", {"format": "%d/%m/%Y %H:%M:%S"}, 1_700_000_000_000_000_000),
    ],
)
def test_timestamps(raw: object, spec: dict[str, str], expected: int) -> None:
    assert parse_timestamp(raw, TimestampSpec(field="t", **spec)) == expected


def test_flatten_keeps_order_and_drops_nulls() -> None:
    assert flatten({"a": {"b": [1, {"c": None, "d": "x"}]}, "e": False}) == {"a_b_0": 1, "a_b_1_d": "x", "e": False}


def test_line_protocol_keeps_its_own_tags_over_the_rule_ones() -> None:
    rules = _rules("{name: r, topic: 'edge/{device}', format: line, tags: {device: '{device}', site: default}}")
    mapped = map_message(rules, "edge/box", b"m,site=lyon v=1 1\n", ARRIVAL)
    assert mapped.value == "m,device=box,site=lyon v=1.0 1\n"


# --- identity: the topic (the authenticated login) names the device, never the payload (issue 16) ---------


@pytest.mark.parametrize(
    ("rule", "topic", "payload"),
    [
        ("{name: r, topic: 'telegraf/{device}/#', format: line}", "telegraf/f1/x", b"fermenter,device=f2 t=77.7 1\n"),
        ("{name: r, topic: 'm/{device}', measurement: m, tag_keys: [device]}", "m/f1", b'{"device": "f2", "v": 1}'),
        ("{name: r, topic: 'x', format: line, device: eco, tags: {device: eco}}", "x", b"m,device=f2 v=1 1\n"),
        ("{name: r, topic: 's/{site}/{device}', format: line}", "s/a/f1", b"m,device=f1,site=b v=1 1\n"),
    ],
)
def test_a_payload_cannot_rename_the_device_of_its_topic(rule: str, topic: str, payload: bytes) -> None:
    with pytest.raises(MappingError) as err:
        map_message(_rules(rule), topic, payload, ARRIVAL)
    assert err.value.reason == "tag_mismatch" and "contradicts" in err.value.detail


def test_a_payload_may_repeat_its_own_device_tag() -> None:
    rules = _rules("{name: r, topic: 'telegraf/{device}/#', format: line}")
    mapped = map_message(rules, "telegraf/f1/x", b"fermenter,device=f1 t=18.5 1\nfermenter t=18.6 2\n", ARRIVAL)
    assert mapped.value == "fermenter,device=f1 t=18.5 1\nfermenter,device=f1 t=18.6 2\n"

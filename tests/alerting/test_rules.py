"""Rules files: the shipped example loads; every kind of mistake is refused with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from telestack.alerting.errors import RuleError
from telestack.alerting.rules import MatcherSpec, compile_matchers, load_rules, parse_rules

EXAMPLE = Path(__file__).parents[2] / "config" / "alerts.yaml"

MINIMAL = """\
rules:
  - name: hot
    select: {measurement: fermenter, field: temperature}
    condition: {type: threshold, above: 25}
"""


def problems(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(RuleError) as caught:
        parse_rules(text, "rules.yaml")
    return [(p.line, p.message) for p in caught.value.problems]


def test_example_rules_file_loads_with_defaults_resolved() -> None:
    ruleset = load_rules(EXAMPLE)
    names = [rule.name for rule in ruleset.rules]
    assert {"fermenter_setpoint", "fermenter_no_data", "teleinfo_extreme_power", "teleinfo_no_data"} <= set(names)
    assert any(rule.condition.type == "threshold" for rule in ruleset.rules)
    rule = next(r for r in ruleset.rules if r.name == "fermenter_no_data")
    assert ruleset.notify(rule) == ["sms-brasserie"]  # from defaults
    assert ruleset.repeat_interval(rule) == 4 * 3600
    assert "Aucune température" in rule.annotations["summary"]
    setpoint_rule = next(r for r in ruleset.rules if r.name == "fermenter_setpoint")
    assert setpoint_rule.for_ == 900


def test_minimal_file_and_empty_file() -> None:
    assert [r.name for r in parse_rules(MINIMAL).rules] == ["hot"]
    assert parse_rules("").rules == []


def test_yaml_syntax_error_names_its_line() -> None:
    found = problems(MINIMAL + "  - name: [unclosed\n")
    assert found[0][0] == 6 and "YAML" in found[0][1]


def test_duplicate_key_is_refused_with_its_line() -> None:
    text = MINIMAL.replace("field: temperature}", "field: temperature}\n    for: 1m\n    for: 2m")
    [(line, message)] = problems(text)
    assert line == 5 and "duplicate key 'for'" in message


def test_each_validation_problem_points_at_its_line() -> None:
    text = """\
notifiers:
  hook: {type: webhook, url: "ftp://nope"}
rules:
  - name: dev
    select: {measurement: fermenter, field: temperature}
    condition: {type: deviation, setpoint: {field: setpoint}, max: -2}
    for: 15 minutes
  - name: bad
    select: {measurement: m, field: f}
    condition: {type: thresold, above: 1}
"""
    found = problems(text)
    lines = [line for line, _ in found]
    assert lines == [2, 6, 7, 10]
    assert "https?" in found[0][1]
    assert "greater than 0" in found[1][1]
    assert "not a duration" in found[2][1]
    assert "'thresold'" in found[3][1]


def test_error_message_names_file_line_and_rule() -> None:
    with pytest.raises(RuleError) as caught:
        parse_rules(MINIMAL.replace("above: 25", "above: 25, below: 10"), "config/alerts.yaml")
    message = str(caught.value)
    assert "config/alerts.yaml:4: rules[0] (hot).condition:" in message
    assert "exactly one of above, below, outside" in message


def test_cross_checks_unknown_notifier_duplicate_name_bad_template() -> None:
    text = """\
rules:
  - name: a
    select: {measurement: m, field: f}
    condition: {type: threshold, above: 1}
    notify: [sms]
  - name: a
    select: {measurement: m, field: f}
    condition: {type: threshold, above: 1}
    annotations: {summary: "{value:.1q}"}
  - name: c
    select: {measurement: m}
    condition: {type: threshold, above: 1}
"""
    found = problems(text)
    assert found[0] == (5, "unknown notifier 'sms' (known: none)")
    assert found[1][0] == 6 and "already used by rules[0]" in found[1][1]
    assert found[2][0] == 9 and "bad template" in found[2][1]
    assert found[3][0] == 11 and "needs select.field" in found[3][1]


def test_unknown_keys_are_refused() -> None:
    [(line, message)] = problems(MINIMAL + "    severty: critical\n")
    assert line == 5 and "Extra inputs" in message


def test_missing_file_is_a_rule_error() -> None:
    with pytest.raises(RuleError, match="cannot read the rules file"):
        load_rules("/nonexistent/alerts.yaml")


def test_matchers_exact_glob_regex_negate() -> None:
    match = compile_matchers(
        {
            "device": MatcherSpec(glob="f*"),
            "site": MatcherSpec(regex="brasserie|labo"),
            "kind": MatcherSpec(equals="test", negate=True),
        }
    )
    assert match({"device": "f1", "site": "brasserie"})
    assert match({"device": "f12", "site": "labo", "kind": "prod"})
    assert not match({"device": "g1", "site": "brasserie"})
    assert not match({"device": "f1", "site": "brasserie-2"})  # regexes are anchored
    assert not match({"device": "f1", "site": "labo", "kind": "test"})
    assert not match({"site": "labo"})  # a missing tag matches nothing (but a negation)


def test_scalar_matcher_is_exact_and_numbers_become_text() -> None:
    ruleset = parse_rules(MINIMAL.replace("measurement: fermenter,", "measurement: fermenter, tags: {zone: 3},"))
    spec = ruleset.rules[0].select.tags["zone"]
    assert spec.equals == "3"


def test_silence_and_inhibit_parse() -> None:
    ruleset = parse_rules(
        MINIMAL
        + """\
silences:
  - matchers: {device: f3}
    starts: 2025-01-01T00:00:00
    ends: 2025-01-31T18:00:00+01:00
    comment: nettoyage
inhibit:
  - source: {severity: critical}
    target: {severity: warning}
    equal: [device]
"""
    )
    start, end = ruleset.file.silences[0].active_between()
    assert start < end
    assert ruleset.file.inhibit[0].equal == ["device"]

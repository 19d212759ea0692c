"""Rules: topic filters with named levels, templates, defaults, and errors that name the rule at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from telestack.mqtt_bridge.errors import RuleError
from telestack.mqtt_bridge.rules import RuleSet, Template, TopicFilter, filter_covers, load_rules, parse_rules


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("fermenters/{device}/{field}", "fermenters/f1/temperature", {"device": "f1", "field": "temperature"}),
        ("fermenters/{device}/{field}", "fermenters/f1", None),
        ("fermenters/{device}/{field}", "fermenters/f1/temperature/x", None),
        ("fermenters/{device}/{field}", "brewery/f1/temperature", None),
        ("tele/{device}/SENSOR", "tele/kitchen/SENSOR", {"device": "kitchen"}),
        ("tele/{device}/SENSOR", "tele/kitchen/STATE", None),
        ("telegraf/{device}/#", "telegraf/box", {"device": "box"}),
        ("telegraf/{device}/#", "telegraf/box/a/b", {"device": "box"}),
        ("a/+/c", "a/anything/c", {}),
        ("#", "any/topic/at/all", {}),
        ("site.1/{device}", "site.1/x", {"device": "x"}),  # regex characters are literal
        ("site.1/{device}", "site-1/x", None),
    ],
)
def test_topic_filter_matches_and_names_levels(pattern: str, topic: str, expected: dict[str, str] | None) -> None:
    assert TopicFilter.parse(pattern).match(topic) == expected


def test_subscription_replaces_named_levels_with_plus() -> None:
    assert TopicFilter.parse("fermenters/{device}/{field}").subscription == "fermenters/+/+"
    assert TopicFilter.parse("telegraf/{device}/#").subscription == "telegraf/+/#"


@pytest.mark.parametrize("pattern", ["a/#/b", "a/{x}/{x}", "a/dev{x}", "a/b+", "", "a/{topic}"])
def test_bad_filters_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        TopicFilter.parse(pattern)


def test_filter_covers() -> None:
    assert filter_covers("#", "a/b")
    assert filter_covers("a/+", "a/b")
    assert filter_covers("a/#", "a/+/c")
    assert not filter_covers("a/+", "a/b/c")
    assert not filter_covers("a/b", "a/+")
    assert not filter_covers("a/+/c", "a/#")


def test_overlapping_subscriptions_are_merged() -> None:
    rules = parse_rules(
        """
rules:
  - {name: a, topic: "tele/{device}/SENSOR", measurement: t}
  - {name: b, topic: "tele/#", format: line}
  - {name: c, topic: "fermenters/{device}/{field}", format: value, measurement: f, field: "{field}"}
"""
    )
    assert rules.subscriptions() == ["tele/#", "fermenters/+/+"]


def test_template_rendering_and_unknown_names() -> None:
    assert Template.parse("{device}/{topic}", {"device", "topic"}).render({"device": "f1", "topic": "x/y"}) == "f1/x/y"
    assert Template.parse("static {{braces}}", set()).render({}) == "static {braces}"
    with pytest.raises(ValueError, match=r"\{fermenter\}"):
        Template.parse("{fermenter}", {"device"})


def test_first_matching_rule_wins_and_matches_are_cached() -> None:
    rules = parse_rules(
        """
rules:
  - {name: specific, topic: "fermenters/f1/{field}", format: value, measurement: special, field: "{field}"}
  - {name: general, topic: "fermenters/{device}/{field}", format: value, measurement: fermenter, field: "{field}"}
"""
    )
    first = rules.match("fermenters/f1/temperature")
    assert first is not None and first.rule.name == "specific"
    second = rules.match("fermenters/f2/temperature")
    assert second is not None and second.rule.name == "general"
    assert second.values == {"device": "f2", "field": "temperature", "topic": "fermenters/f2/temperature"}
    assert (second.key, second.measurement, second.tags, second.field) == (
        "f2",
        "fermenter",
        {"device": "f2"},
        "temperature",
    )
    assert rules.match("fermenters/f2/temperature") is second
    assert rules.match("elsewhere") is None


def test_default_tags_are_named_levels_not_used_elsewhere() -> None:
    rules = parse_rules(
        """
rules:
  - {name: r, topic: "{site}/{device}/{field}", format: value, measurement: "{site}", field: "{field}"}
"""
    )
    assert [key for key, _ in rules.rules[0].tags] == ["device"]


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("rules: [{name: r, topic: a/b}]", r"rule 'r': .*measurement is required"),
        ("rules: [{name: r, topic: a/b, format: line, measurement: m}]", "does not apply to format line"),
        ("rules: [{name: r, topic: a/b, format: value, measurement: m, exclude: [x]}]", "json only"),
        ("rules: [{name: r, topic: a/b, measurement: m, typo: 1}]", r"rule 'r'\.typo: Extra inputs"),
        ("rules: [{name: r, topic: a/b, measurement: m, types: {x: double}}]", r"rule 'r'\.types\.x"),
        ("rules: [{name: r, topic: 'a/{d}', measurement: '{device}'}]", r"rule 'r': template '\{device\}'"),
        ("rules: [{name: r, topic: 'a/#/b', measurement: m}]", "must be the last level"),
        ("rules: [{name: r, topic: a, measurement: m, timestamp: {field: t, format: weird}}]", "timestamp format"),
        ("rules: [{name: r, topic: a, measurement: m, timestamp: {field: t, timezone: Mars/Olympus}}]", "IANA"),
        ("rules: [{name: r, topic: a, measurement: m}, {name: r, topic: b, measurement: m}]", "repeated: r"),
        ("rules: [oops", "not valid YAML"),
    ],
)
def test_invalid_rules_name_the_rule_and_the_problem(yaml_text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rules(yaml_text)


def test_missing_rules_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"mqtt_bridge\.rules_file"):
        load_rules(tmp_path / "nope.yaml")


def test_shipped_rules_load(shipped_rules: RuleSet) -> None:
    names = [compiled.name for compiled in shipped_rules.rules]
    assert {"fermenter-stc1000", "teleinfo-ecodevices", "plug-mystrom", "tasmota-sensor", "line-protocol"} <= set(names)
    assert "fermenters/+/+" in shipped_rules.subscriptions()


def test_empty_rules_file_is_an_empty_rule_set() -> None:
    assert len(parse_rules("")) == 0

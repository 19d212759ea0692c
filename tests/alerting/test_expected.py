"""Expected devices: a no-data rule with `expect` covers devices that never reported, one instance per device."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from telestack.actuator.registry import Registry
from telestack.alerting.alert import AlertState
from telestack.alerting.engine import AlertEngine
from telestack.alerting.errors import RuleError
from telestack.alerting.expected import expected_devices, load_expected, partition_of
from telestack.alerting.rules import parse_rules
from telestack.alerting.state_store import MemoryStateStore
from telestack.cli import main
from telestack.core.errors import ConfigError
from tests.alerting.builders import at, point

RULES = """\
rules:
  - name: fermenter_no_data
    select: {measurement: fermenter, tags: {device: {glob: "f*"}}, field: temperature}
    condition: {type: nodata, after: 5m, expect: registry}
    annotations:
      summary: "{device}: nothing for {duration}, last seen {last_seen}"
  - name: meter_no_data
    select: {measurement: teleinfo, field: T1_PAPP}
    condition: {type: nodata, after: 10m, expect: [compteur-1]}
"""

REGISTRY = Registry.model_validate(
    {
        "types": {"plug": {"commands": {"on": {}}}, "fermenter": {}},
        "devices": [
            {"id": "plug-1", "type": "plug", "site": "lab"},
            {"id": "f1", "type": "fermenter", "site": "brewery"},
            {"id": "f9", "type": "fermenter", "site": "brewery"},
        ],
    }
)


def build(rules: str = RULES) -> AlertEngine:
    ruleset = parse_rules(rules, "test.yaml")
    return AlertEngine(ruleset, expected_devices(ruleset, REGISTRY))


def test_registry_devices_are_filtered_by_the_rule_selector_and_lists_are_taken_as_given() -> None:
    ruleset = parse_rules(RULES, "test.yaml")
    assert expected_devices(ruleset, REGISTRY) == {"fermenter_no_data": ("f1", "f9"), "meter_no_data": ("compteur-1",)}


def test_a_never_seen_device_fires_after_the_grace_period_naming_it_and_never_then_resolves() -> None:
    engine = build()
    created = engine.expect(at(0))
    assert sorted(i.fingerprint for i in created) == [
        "fermenter_no_data/fermenter,device=f1",
        "fermenter_no_data/fermenter,device=f9",
        "meter_no_data/teleinfo,device=compteur-1",
    ]
    assert engine.expect(at(1)) == []  # once
    assert engine.tick(at(299)) == []
    changes = engine.tick(at(301))
    fired = {c.instance.fingerprint: c for c in changes}
    assert set(fired) == {"fermenter_no_data/fermenter,device=f1", "fermenter_no_data/fermenter,device=f9"}
    assert fired["fermenter_no_data/fermenter,device=f9"].annotations["summary"] == (
        "f9: nothing for 5 min 1 s, last seen never"
    )
    # f9 reports with more tags than the instance has: the per-device instance resolves.
    resolved = engine.observe(point("fermenter", {"device": "f9", "probe": "a"}, {"temperature": 18.0}, 302), at(302))
    assert [(c.instance.fingerprint, c.state) for c in resolved] == [
        ("fermenter_no_data/fermenter,device=f9", AlertState.RESOLVED)
    ]
    assert engine.tick(at(400)) == []
    # ...and silent again it fires with its last-seen time.
    again = [c for c in engine.tick(at(302 + 301)) if c.instance.rule == "fermenter_no_data"]
    assert [c.instance.fingerprint for c in again] == ["fermenter_no_data/fermenter,device=f9"]
    assert "last seen never" not in again[0].annotations["summary"]


def test_a_device_outside_the_expected_list_still_gets_per_device_no_data() -> None:
    engine = build()
    engine.observe(point("teleinfo", {"device": "compteur-2", "product": "x"}, {"T1_PAPP": 100}, 0), at(0))
    assert "meter_no_data/teleinfo,device=compteur-2" in engine.instances


def test_the_wait_is_durable_a_restart_neither_restarts_the_grace_period_nor_refires() -> None:
    store = MemoryStateStore()
    first = build()
    first.expect(at(0))
    for inst in first.instances.values():
        store.save(inst.fingerprint, inst.to_record())
    second = build()
    restored, dropped = second.restore(store.load().values())
    assert (restored, dropped) == (3, 0)
    assert second.expect(at(200)) == []
    assert len(second.tick(at(301))) == 2  # counted from the first start, not from this one
    for inst in second.instances.values():
        store.save(inst.fingerprint, inst.to_record())
    third = build()
    third.restore(store.load().values())
    assert third.tick(at(400)) == []  # firing, restored as firing: not fired again
    assert {i.fingerprint for i in third.firing} == {
        "fermenter_no_data/fermenter,device=f1",
        "fermenter_no_data/fermenter,device=f9",
    }


def test_expect_places_devices_on_the_partition_their_key_goes_to() -> None:
    engine = build()
    owned = {partition_of("f1", 3)}
    created = engine.expect(at(0), lambda d: partition_of(d, 3) if partition_of(d, 3) in owned else None)
    assert {i.tags["device"] for i in created} == {d for d in ("f1", "f9", "compteur-1") if partition_of(d, 3) in owned}
    assert all(i.origin == partition_of(i.tags["device"], 3) for i in created)


def test_an_expected_id_that_the_selector_excludes_is_a_rule_error() -> None:
    expected = "test.yaml:4: rules[0] (r).condition.expect[0]: 'plug-1' does not match select.tags.device"
    with pytest.raises(RuleError, match=re.escape(expected)):
        parse_rules(
            "rules:\n  - name: r\n    select: {measurement: m, tags: {device: {glob: 'f*'}}}\n"
            "    condition: {type: nodata, after: 1m, expect: [plug-1]}\n",
            "test.yaml",
        )


def test_the_registry_is_read_only_when_a_rule_needs_it(tmp_path: Path) -> None:
    listed = parse_rules(RULES.split("  - name: meter_no_data")[0].replace("expect: registry", "expect: [f1]"))
    assert load_expected(listed, tmp_path / "absent.yaml") == {"fermenter_no_data": ("f1",)}
    with pytest.raises(ConfigError, match=r"absent\.yaml does not exist \(set alerting\.devices_file\)"):
        load_expected(parse_rules(RULES), tmp_path / "absent.yaml")


def test_alerts_check_resolves_expected_devices_and_refuses_a_missing_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Path(__file__).parents[2] / "config"
    # the console script's entry point, in this process
    ok = main(["alerts", "check", str(example / "alerts.yaml"), "--devices", str(example / "devices.yaml")])
    out, err = capsys.readouterr()
    assert ok == 0, err
    assert "fermenter_no_data: nodata on fermenter[device~f*].temperature expecting f1, f2, f3 (registry)" in out
    missing = main(["alerts", "check", str(example / "alerts.yaml"), "--devices", str(tmp_path / "none.yaml")])
    assert missing == 1 and "set alerting.devices_file" in capsys.readouterr().err

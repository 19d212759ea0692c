"""The rule engine, driven by an explicit clock: no sleeping anywhere."""

from __future__ import annotations

from telestack.alerting.alert import AlertState
from telestack.alerting.engine import AlertEngine
from telestack.alerting.rules import parse_rules
from tests.alerting.builders import at, engine, fermenter, point

FIRING, PENDING, RESOLVED, NORMAL = AlertState.FIRING, AlertState.PENDING, AlertState.RESOLVED, AlertState.NORMAL

THRESHOLD = """\
rules:
  - name: hot
    select: {measurement: fermenter, tags: {device: {glob: "f*"}}, field: temperature}
    condition: {type: threshold, above: 25, hysteresis: 2}
    for: 60s
    annotations:
      summary: "{device} à {value:.1f} °C depuis {duration}"
"""

SETPOINT = """\
rules:
  - name: setpoint
    select: {measurement: fermenter, tags: {device: {regex: "f[0-9]+"}}, field: temperature}
    condition: {type: deviation, setpoint: {field: setpoint}, max: 2, hysteresis: 0.5}
    for: 10m
    severity: warning
    annotations:
      summary: "Fermenteur {device} : {value:.1f} °C, consigne {setpoint:.1f} °C, depuis {duration}"
"""

NODATA = """\
rules:
  - name: silent
    select: {measurement: fermenter, field: temperature}
    condition: {type: nodata, after: 5m}
    annotations: {summary: "Plus de données de {device} depuis {duration}"}
"""


def states(changes: list) -> list[tuple[str, AlertState]]:
    return [(c.instance.fingerprint, c.state) for c in changes]


def test_threshold_pending_firing_resolved_with_for_and_hysteresis() -> None:
    e = engine(THRESHOLD)
    now = at(10_000)
    assert e.observe(fermenter("f1", 0, 20.0), now) == []
    [change] = e.observe(fermenter("f1", 10, 26.0), now)
    assert (change.previous, change.state) == (NORMAL, PENDING)
    assert e.observe(fermenter("f1", 40, 27.0), now) == []  # still pending: 30 s < for
    [change] = e.observe(fermenter("f1", 70, 26.5), now)
    assert change.state is FIRING
    assert change.annotations["summary"] == "f1 à 26.5 °C depuis 1 min"
    assert e.observe(fermenter("f1", 80, 24.0), now) == []  # inside the hysteresis band: still firing
    [change] = e.observe(fermenter("f1", 90, 23.0), now)
    assert change.state is RESOLVED
    assert e.instances["hot/fermenter,device=f1"].resolved_at_ns == at(90)


def test_pending_returns_to_normal_without_firing() -> None:
    e = engine(THRESHOLD)
    now = at(10_000)
    e.observe(fermenter("f1", 0, 26.0), now)
    [change] = e.observe(fermenter("f1", 30, 24.0), now)
    assert (change.previous, change.state) == (PENDING, NORMAL)
    assert e.tick(at(200)) == []


def test_tick_fires_a_pending_alert_when_for_elapses_without_new_points() -> None:
    e = engine(THRESHOLD)
    e.observe(fermenter("f1", 0, 26.0), at(0))
    assert e.tick(at(59)) == []
    [change] = e.tick(at(61))
    assert change.state is FIRING and change.at_ns == at(61)
    assert e.tick(at(120)) == []  # fires once


def test_one_instance_per_matching_series_and_unmatched_series_ignored() -> None:
    e = engine(THRESHOLD)
    now = at(1000)
    for device in ("f1", "f2", "g1"):
        e.observe(fermenter(device, 0, 30.0), now)
    e.observe(point("fermenter", {"device": "f3", "site": "b"}, {"temperature": 30.0}, 0), now)
    assert sorted(e.instances) == [
        "hot/fermenter,device=f1",
        "hot/fermenter,device=f2",
        "hot/fermenter,device=f3,site=b",
    ]
    changes = e.tick(at(100))
    assert {c.instance.tags["device"] for c in changes} == {"f1", "f2", "f3"}


def test_tag_order_does_not_split_a_series() -> None:
    e = engine(THRESHOLD)
    e.observe(point("fermenter", {"device": "f1", "site": "b"}, {"temperature": 30.0}, 0), at(0))
    e.observe(point("fermenter", {"site": "b", "device": "f1"}, {"temperature": 30.0}, 1), at(1))
    assert len(e.instances) == 1


def test_string_fields_and_missing_fields_are_ignored() -> None:
    e = engine(THRESHOLD)
    assert e.observe(point("fermenter", {"device": "f1"}, {"temperature": "n/a"}, 0), at(0)) == []
    assert e.observe(point("fermenter", {"device": "f1"}, {"other": 99.0}, 0), at(0)) == []
    assert e.observe(point("other", {"device": "f1"}, {"temperature": 99.0}, 0), at(0)) == []


def test_future_timestamps_are_clamped_to_now() -> None:
    e = engine(THRESHOLD)
    [change] = e.observe(fermenter("f1", 3600, 30.0), at(0))  # device clock one hour ahead
    assert change.at_ns == at(0)


def test_setpoint_deviation_with_setpoint_and_temperature_in_separate_points() -> None:
    """The STC-1000 thermostats publish temperature and setpoint on separate topics."""
    e = engine(SETPOINT)
    now = at(100_000)
    e.observe(fermenter("f1", 0, setpoint=18.0), now)
    assert e.observe(fermenter("f1", 10, 19.0), now) == []
    [change] = e.observe(fermenter("f1", 20, 20.5), now)
    assert change.state is PENDING and change.setpoint == 18.0
    [change] = e.observe(fermenter("f1", 620, 20.6), now)
    assert change.state is FIRING
    assert change.annotations["summary"] == "Fermenteur f1 : 20.6 °C, consigne 18.0 °C, depuis 10 min"
    # The brewer raises the setpoint: the same temperature is now fine, the alert resolves.
    [change] = e.observe(fermenter("f1", 700, setpoint=20.0), now)
    assert change.state is RESOLVED and change.setpoint == 20.0


def test_deviation_below_setpoint_and_constant_setpoint() -> None:
    e = engine(SETPOINT.replace("setpoint: {field: setpoint}", "setpoint: 12").replace("for: 10m", "for: 0s"))
    [change] = e.observe(fermenter("f7", 0, 9.5), at(0))
    assert change.state is FIRING and change.setpoint == 12.0 and change.derived == -2.5


def test_setpoint_from_another_series_of_the_same_device() -> None:
    e = engine(
        """\
rules:
  - name: dev
    select: {measurement: fermenter, field: temperature}
    condition:
      type: deviation
      setpoint: {measurement: thermostat, field: target, match: [device]}
      max: 1
"""
    )
    now = at(1000)
    assert e.observe(fermenter("f1", 0, 22.0), now) == []  # no setpoint known yet: nothing to compare
    e.observe(point("thermostat", {"device": "f2"}, {"target": 22.0}, 1), now)  # another device's
    assert e.observe(fermenter("f1", 2, 22.0), now) == []
    [change] = e.observe(point("thermostat", {"device": "f1"}, {"target": 18.0}, 3), now)
    assert change.state is FIRING and change.instance.tags == {"device": "f1"} and change.setpoint == 18.0
    [change] = e.observe(fermenter("f1", 4, 18.5), now)
    assert change.state is RESOLVED


def test_nodata_fires_on_tick_and_clears_when_data_returns() -> None:
    e = engine(NODATA)
    e.observe(fermenter("f1", 0, 18.0), at(0))
    e.observe(fermenter("f2", 0, 18.0), at(0))
    e.observe(fermenter("f2", 200, 18.0), at(200))
    assert e.tick(at(299)) == []
    [change] = e.tick(at(301))
    assert change.instance.tags["device"] == "f1" and change.state is FIRING
    assert change.annotations["summary"] == "Plus de données de f1 depuis 5 min 1 s"
    assert e.tick(at(400)) == []  # once
    [change] = e.observe(fermenter("f1", 450, 18.0), at(450))
    assert change.state is RESOLVED
    [change] = e.tick(at(501))  # f2 silent since 200
    assert change.instance.tags["device"] == "f2"


def test_nodata_on_any_field_counts_every_point() -> None:
    e = engine(NODATA.replace(", field: temperature", ""))
    e.observe(fermenter("f1", 0, setpoint=18.0), at(0))
    e.observe(fermenter("f1", 250, setpoint=18.0), at(250))
    assert e.tick(at(400)) == []


def test_rate_of_change_rule() -> None:
    e = engine(
        """\
rules:
  - name: spike
    select: {measurement: teleinfo, field: T1_PAPP}
    condition: {type: rate, per: 1m, above: 3000}
"""
    )
    meter = {"device": "compteur"}
    assert e.observe(point("teleinfo", meter, {"T1_PAPP": 1000}, 0), at(0)) == []
    assert e.observe(point("teleinfo", meter, {"T1_PAPP": 2000}, 60), at(60)) == []
    [change] = e.observe(point("teleinfo", meter, {"T1_PAPP": 3100}, 80), at(80))  # +1100 in 20 s
    assert change.state is FIRING and change.derived == 3300
    [change] = e.observe(point("teleinfo", meter, {"T1_PAPP": 3100}, 140), at(140))
    assert change.state is RESOLVED


def test_window_mean_rule_with_clear_condition() -> None:
    e = engine(
        """\
rules:
  - name: extreme
    select: {measurement: teleinfo, field: T1_PAPP}
    condition: {type: window, aggregate: mean, window: 5m, above: 9000, clear: {below: 7000}}
"""
    )
    meter = {"device": "compteur"}
    changes = []
    for i, papp in enumerate([8000, 9500, 10500, 9000, 5000, 6000, 3000]):
        changes += e.observe(point("teleinfo", meter, {"T1_PAPP": papp}, i * 60), at(i * 60))
    # means: 8000, 8750, 9333 (fires), 9250, 8400 (not yet clear), 7400 (the 8000 left), 6700 (clear)
    assert [(c.state, round(c.derived)) for c in changes] == [(FIRING, 9333), (RESOLVED, 6700)]


def test_severity_labels_and_annotations_use_rule_and_tags() -> None:
    e = engine(SETPOINT.replace("severity: warning", "severity: critical\n    labels: {site: brasserie}"))
    e.observe(fermenter("f1", 0, 25.0, 18.0), at(0))
    inst = e.instances["setpoint/fermenter,device=f1"]
    assert inst.labels == {"device": "f1", "site": "brasserie", "rule": "setpoint", "severity": "critical"}


def test_silence_and_inhibition_mute() -> None:
    e = engine(
        """\
rules:
  - name: warn
    select: {measurement: fermenter, field: temperature}
    condition: {type: threshold, above: 20}
    severity: warning
  - name: crit
    select: {measurement: fermenter, field: temperature}
    condition: {type: threshold, above: 30}
    severity: critical
silences:
  - matchers: {device: f3}
    starts: 2023-11-14T00:00:00+00:00
    ends: 2023-11-16T00:00:00+00:00
inhibit:
  - source: {severity: critical}
    target: {severity: warning}
    equal: [device]
"""
    )
    now = at(0)  # 2023-11-14T22:13:20Z, inside the silence
    e.observe(fermenter("f1", 0, 25.0), now)
    e.observe(fermenter("f2", 0, 35.0), now)
    e.observe(fermenter("f3", 0, 25.0), now)
    warn_f1, warn_f2 = e.instances["warn/fermenter,device=f1"], e.instances["warn/fermenter,device=f2"]
    assert e.muted(warn_f1, now) is None
    assert e.muted(warn_f2, now) == "inhibited by crit/fermenter,device=f2"
    assert e.muted(e.instances["crit/fermenter,device=f2"], now) is None
    assert (e.muted(e.instances["warn/fermenter,device=f3"], now) or "").startswith("silenced")
    assert e.muted(e.instances["warn/fermenter,device=f3"], at(200_000)) is None  # the silence ended
    e.observe(fermenter("f2", 1, 25.0), now)  # the critical resolves: the warning speaks again
    assert e.muted(warn_f2, now) is None


def test_restore_keeps_state_and_skips_replayed_points() -> None:
    first = engine(THRESHOLD)
    first.observe(fermenter("f1", 0, 30.0), at(0))
    first.observe(fermenter("f1", 70, 30.0), at(70))  # firing
    first.observe(fermenter("f1", 80, 30.0), at(80))
    record = first.instances["hot/fermenter,device=f1"].to_record()

    second = engine(THRESHOLD)
    assert second.restore([record]) == (1, 0)
    inst = second.instances["hot/fermenter,device=f1"]
    assert inst.state is FIRING and inst.fired_at_ns == at(70)
    # A replay of older telemetry (Kafka redelivers what was not committed) changes nothing...
    assert second.observe(fermenter("f1", 75, 10.0), at(100)) == []
    assert inst.state is FIRING
    # ...newer points are evaluated as usual.
    [change] = second.observe(fermenter("f1", 90, 10.0), at(100))
    assert change.state is RESOLVED


def test_restore_drops_records_of_removed_or_changed_rules() -> None:
    first = engine(THRESHOLD)
    first.observe(fermenter("f1", 0, 30.0), at(0))
    record = first.instances["hot/fermenter,device=f1"].to_record()
    other = engine(THRESHOLD.replace('{glob: "f*"}', '{glob: "g*"}'))
    assert other.restore([record, {**record, "rule": "gone"}]) == (0, 2)


def test_restored_nodata_instance_fires_even_if_the_series_never_returns() -> None:
    first = engine(NODATA)
    first.observe(fermenter("f1", 0, 18.0), at(0))
    record = first.instances["silent/fermenter,device=f1"].to_record()
    second = engine(NODATA)
    second.restore([record])
    [change] = second.tick(at(400))
    assert change.state is FIRING


def test_drop_forgets_instances_of_a_revoked_partition() -> None:
    e = engine(THRESHOLD)
    e.observe(fermenter("f1", 0, 30.0), at(0), origin=0)
    e.observe(fermenter("f2", 0, 30.0), at(0), origin=1)
    gone = e.drop(lambda inst: inst.origin != 1)
    assert [inst.tags["device"] for inst in gone] == ["f2"]
    assert list(e.instances) == ["hot/fermenter,device=f1"]
    assert [c.instance.tags["device"] for c in e.tick(at(100))] == ["f1"]


# --- rule reload ---------------------------------------------------------------------------------------

RELOAD_RULES = """\
rules:
  - name: hot
    select: {measurement: fermenter, field: temperature}
    condition: {type: threshold, above: 25}
  - name: mean_hot
    select: {measurement: fermenter, field: temperature}
    condition: {type: window, aggregate: mean, window: 1m, above: 25}
  - name: gone_soon
    select: {measurement: fermenter, field: temperature}
    condition: {type: threshold, above: 20}
"""


def test_reload_keeps_unchanged_rules_untouched_and_carries_state_of_changed_ones() -> None:
    eng = engine(RELOAD_RULES)
    eng.observe(fermenter("f1", 0, temperature=30.0), at(0))
    window_tracker = eng.instances["mean_hot/fermenter,device=f1"].tracker
    assert {i.rule for i in eng.firing} == {"hot", "mean_hot", "gone_soon"}
    edited = RELOAD_RULES.replace("above: 25}\n  - name: mean_hot", "above: 35}\n  - name: mean_hot").split(
        "  - name: gone_soon"
    )[0]
    dropped, changed = eng.replace_rules(parse_rules(edited, "test.yaml"))
    assert [i.fingerprint for i in dropped] == ["gone_soon/fermenter,device=f1"]
    assert changed == ["hot"]
    assert eng.instances["mean_hot/fermenter,device=f1"].tracker is window_tracker  # unchanged: same state
    assert {i.rule for i in eng.firing} == {"hot", "mean_hot"}  # the changed rule's alert is still firing...
    changes = eng.observe(fermenter("f1", 1, temperature=30.0), at(1))
    assert [(c.instance.rule, c.state) for c in changes] == [("hot", AlertState.RESOLVED)]  # ...until 30 < 35


def test_reload_drops_never_seen_devices_no_longer_expected_and_adds_new_ones() -> None:
    rules = """\
rules:
  - name: quiet
    select: {measurement: fermenter, tags: {device: {glob: "f*"}}, field: temperature}
    condition: {type: nodata, after: 1m, expect: [f1, f2]}
"""
    eng = AlertEngine(parse_rules(rules), {"quiet": ["f1", "f2"]})
    eng.expect(at(0))
    eng.observe(fermenter("f1", 1, temperature=18.0), at(1))
    eng.tick(at(100))
    assert {i.fingerprint for i in eng.firing} == {"quiet/fermenter,device=f1", "quiet/fermenter,device=f2"}
    edited = rules.replace("[f1, f2]", "[f1, f3]")
    dropped, changed = eng.replace_rules(parse_rules(edited), {"quiet": ["f1", "f3"]})
    assert [i.fingerprint for i in dropped] == ["quiet/fermenter,device=f2"]  # never seen, no longer expected
    assert changed == ["quiet"]
    assert [i.fingerprint for i in eng.firing] == ["quiet/fermenter,device=f1"]  # it did report once: kept
    assert [i.fingerprint for i in eng.expect(at(100))] == ["quiet/fermenter,device=f3"]

"""``telestack alerts status``: the brewery's daily report, from the state topic."""

from __future__ import annotations

import json

import pytest

from telestack.alerting.state_store import KafkaStateStore
from telestack.alerting.status import format_status
from telestack.cli import main
from telestack.core.kafka import KafkaProducer, ensure_topics
from telestack.core.settings import KafkaSettings
from telestack.core.topics import COMPACT_CONFIG
from tests.alerting.builders import at, engine, fermenter

RULES = """\
rules:
  - name: fermenter_setpoint
    select: {measurement: fermenter, field: temperature}
    condition: {type: deviation, setpoint: {field: setpoint}, max: 2}
"""


def records() -> list[dict]:
    e = engine(RULES)
    e.observe(fermenter("f1", 0, 25.95, 18.0), at(0))
    e.observe(fermenter("f2", 0, 5.95, 6.0), at(0))
    e.observe(fermenter("f3", 0, 4.25, 4.0), at(0))
    return [inst.to_record() for inst in e.instances.values()]


def test_status_table_lists_problems_first_with_values_and_setpoints() -> None:
    text = format_status(records(), at(120))
    lines = text.splitlines()
    assert lines[0].split() == ["STATE", "RULE", "SERIES", "VALUE", "SETPOINT", "SINCE", "LAST", "SEEN"]
    assert lines[1].split()[:5] == ["FIRING", "fermenter_setpoint", "device=f1", "25.95", "18"]
    assert lines[1].endswith("2 min ago")
    assert [line.split()[2] for line in lines[2:4]] == ["device=f2", "device=f3"]
    assert lines[-1] == "1 firing, 0 pending, out of 3 instances."
    quiet = [r for r in records() if r["tags"]["device"] != "f1"]
    assert format_status(quiet, at(60)).splitlines()[-1] == "No anomaly: 2 instances, none firing."
    assert format_status([], at(0)).splitlines()[-1] == "No alert instance recorded yet."


def test_status_command_reads_the_state_topic(
    kafka_settings: KafkaSettings, unique: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    topic = f"alerts.state-{unique}"
    producer = KafkaProducer(kafka_settings)
    store = KafkaStateStore(kafka_settings, topic, producer)
    ensure_topics(kafka_settings, {topic: 1}, config={topic: COMPACT_CONFIG})
    for record in records():
        store.save(record["fingerprint"], record)
    assert store.flush(10)
    monkeypatch.setenv("TELESTACK_KAFKA__BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.delenv("TELESTACK_CONFIG", raising=False)
    assert main(["alerts", "status", "--kafka.topics.alerts-state", topic]) == 0
    out = capsys.readouterr().out
    assert "FIRING" in out and "device=f1" in out and "1 firing, 0 pending, out of 3 instances." in out
    assert (
        main(["alerts", "status", "--kafka.topics.alerts-state", topic, "--json", "--rule", "fermenter_setpoint"]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert [r["tags"]["device"] for r in data] == ["f1", "f2", "f3"] and data[0]["value"] == 25.95

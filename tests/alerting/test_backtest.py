"""Backtest: the same rules on stored history, purely and against a real InfluxDB."""

from __future__ import annotations

import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from telestack.alerting.alerts_command import parse_time
from telestack.alerting.backtest import flux_query, format_report, query_history, replay
from telestack.alerting.rules import parse_rules
from telestack.cli import main
from telestack.core.errors import ConfigError
from telestack.core.lineproto import format_point
from telestack.core.settings import InfluxSettings
from telestack.native import InfluxEndpoint
from tests.alerting.builders import NS, at, fermenter

RULES = """\
rules:
  - name: fermenter_setpoint
    select: {measurement: fermenter, field: temperature}
    condition: {type: deviation, setpoint: {field: setpoint}, max: 2}
    for: 10m
    annotations: {summary: "Fermenteur {device} : {value:.1f} °C (consigne {setpoint:.1f} °C)"}
  - name: fermenter_no_data
    select: {measurement: fermenter, field: temperature}
    condition: {type: nodata, after: 30m}
"""


def history() -> list:
    """f1: off its setpoint from 1 h to 1 h 30; then silent from 2 h for 40 min. One point a minute."""
    points = []
    for minute in range(0, 180):
        if 120 <= minute < 160:
            continue
        temperature = 21.0 if 60 <= minute < 90 else 18.2
        points.append(fermenter("f1", minute * 60, temperature, 18.0))
    return points


def test_replay_lists_what_would_have_fired_and_when() -> None:
    ruleset = parse_rules(RULES)
    report = replay(ruleset, history(), at(0), at(180 * 60), tick_s=60)
    fired = [(c.instance.rule, c.state.value, (c.at_ns - at(0)) // NS // 60) for c in report.changes]
    assert ("fermenter_setpoint", "firing", 70) in fired  # 60 min + for 10 min
    assert ("fermenter_setpoint", "resolved", 90) in fired
    assert ("fermenter_no_data", "firing", 150) in fired  # last point at 119 min, + 30 min, next tick
    assert ("fermenter_no_data", "resolved", 160) in fired
    text = format_report(report)
    assert "FIRING   fermenter_setpoint  device=f1 value=21 setpoint=18" in text
    assert "fermenter_setpoint [warning]: fired 1 time(s), longest episode 20 min" in text
    assert "PENDING" not in text and "PENDING" in format_report(report, include_pending=True)


def test_flux_query_reads_only_what_the_rules_need() -> None:
    query = flux_query(parse_rules(RULES), "telemetry", at(0), at(60))
    assert 'r._measurement == "fermenter" and (r._field == "setpoint" or r._field == "temperature")' in query
    assert '|> sort(columns: ["_time"])' in query


def test_parse_time_accepts_now_relative_and_iso() -> None:
    now = at(0)
    assert parse_time("now", now) == now
    assert parse_time("-2h", now) == parse_time("2h", now) == now - 7200 * NS
    assert parse_time("1h30m", now) == now - 5400 * NS
    assert parse_time("2023-11-14T22:13:20+00:00", now) == now
    with pytest.raises(ConfigError):
        parse_time("yesterday", now)


def test_backtest_against_influxdb(
    influx_settings: InfluxSettings, influx: InfluxEndpoint, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import time

    base = (time.time_ns() // NS - 4 * 3600) * NS
    points = history()
    for p in points:
        assert p.time_ns is not None
        p.time_ns = p.time_ns - at(0) + base
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=influx_settings.bucket, record="\n".join(format_point(p) for p in points), write_precision="ns"
        )
    ruleset = parse_rules(RULES)
    read = list(query_history(influx_settings, ruleset, base, base + 180 * 60 * NS))
    assert len(read) == len(points)
    assert read[0].fields == {"temperature": 18.2, "setpoint": 18.0} and read[0].tags == {"device": "f1"}
    report = replay(ruleset, read, base, base + 180 * 60 * NS, tick_s=60)
    assert [(c.instance.rule, c.state.value) for c in report.changes if c.state.value != "pending"] == [
        ("fermenter_setpoint", "firing"),
        ("fermenter_setpoint", "resolved"),
        ("fermenter_no_data", "firing"),
        ("fermenter_no_data", "resolved"),
    ]
    # The command: same answer, printed.
    rules = tmp_path / "alerts.yaml"
    rules.write_text(RULES)
    monkeypatch.setenv("TELESTACK_INFLUX__URL", influx.url)
    monkeypatch.setenv("TELESTACK_INFLUX__ORG", influx.org)
    monkeypatch.setenv("TELESTACK_INFLUX__TOKEN", influx.token)
    monkeypatch.delenv("TELESTACK_CONFIG", raising=False)
    from datetime import datetime

    end = datetime.fromtimestamp((base + 180 * 60 * NS) / NS).astimezone().isoformat()  # before the series' silence
    status = main(
        [
            "alerts",
            "backtest",
            str(rules),
            "--from",
            "5h",
            "--to",
            end,
            "--tick",
            "1m",
            "--bucket",
            influx_settings.bucket,
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert f"{len(points)} points evaluated" in out
    assert out.count("FIRING") == 2 and "fermenter_no_data [warning]: fired 1 time(s)" in out

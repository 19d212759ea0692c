"""The Grafana dashboards: well-formed files, and every panel's query (and annotation) run on real data.

The data is the demo's (`make demo`: native Kafka, Mosquitto, InfluxDB, every service and simulator), read
with the read-only token Grafana's datasource uses, with variables resolved the way Grafana resolves them.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from telestack.demo.stack import DemoInfo
from tests.stack.flux import interpolate, load_dashboards, panels, resolve_variables, run_flux, with_time_range

DASHBOARDS = load_dashboards()
EXPECTED_FILES = {"vehicle", "fermentation", "energy", "devices", "pipeline-health"}

# (dashboard file, panel title, refId) → what the result must hold: each name is a `_field` value or a column.
# None: the panel's own variable (the signal explorer: fields among the chosen signals).
EXPECTED: dict[tuple[str, str, str], set[str] | None] = {
    ("vehicle", "Engine speed", "A"): {"EngineSpeed"},
    ("vehicle", "Speed", "A"): {"VehicleSpeed"},
    ("vehicle", "Coolant", "A"): {"CoolantTemp"},
    ("vehicle", "State of charge", "A"): {"StateOfCharge"},
    ("vehicle", "Engine speed (rev limit 12 500 rpm)", "A"): {"EngineSpeed"},
    ("vehicle", "Vehicle and wheel speeds", "A"): {"VehicleSpeed"},
    ("vehicle", "Vehicle and wheel speeds", "B"): {"WheelSpeedFL", "WheelSpeedFR", "WheelSpeedRL", "WheelSpeedRR"},
    ("vehicle", "Coolant temperature (limit 105 °C)", "A"): {"CoolantTemp"},
    ("vehicle", "Oil pressure (minimum 1 bar)", "A"): {"OilPressure"},
    ("vehicle", "Driver inputs", "A"): {"AcceleratorPedal", "BrakePressureFront", "BrakePressureRear"},
    ("vehicle", "Steering and yaw", "A"): {"SteeringAngle"},
    ("vehicle", "Steering and yaw", "B"): {"YawRate"},
    ("vehicle", "Battery pack", "A"): {"PackVoltage", "PackCurrent", "StateOfCharge"},
    ("vehicle", "Cell voltage spread", "A"): {"MinCellVoltage", "MaxCellVoltage"},
    ("vehicle", "Signal explorer: ${message}", "A"): None,
    ("fermentation", "Fermenters now", "A"): {"device", "temperature", "setpoint", "status"},
    ("fermentation", "Alerts", "A"): {"rule", "state", "device", "message"},
    ("fermentation", "All fermenters", "A"): {"device", "_value"},
    ("fermentation", "Fermenter ${fermenter}: temperature vs setpoint", "A"): {"temperature", "setpoint"},
    ("fermentation", "Fermenter ${fermenter}: cooling and heating", "A"): {"cooling", "heating"},
    ("energy", "Now", "A"): {"T1_PAPP", "T1_BASE", "T1_PTEC"},
    ("energy", "Apparent power", "A"): {"T1_PAPP"},
    ("energy", "Energy index", "A"): {"T1_BASE"},
    ("energy", "Energy per hour", "A"): {"device", "_value"},
    ("energy", "Water and gas counters", "A"): {"INDEX_C1", "INDEX_C2"},
    ("energy", "Smart plugs", "A"): {"device", "_value"},
    ("devices", "Smart plug plug-1: click to switch", "A"): {"device", "relay", "power"},
    ("devices", "Last seen", "A"): {"device", "kind", "last_seen", "silent_s"},
    ("devices", "Command outcomes (since the actuator started)", "A"): {"state", "_value"},
    ("devices", "Plug power", "A"): {"device", "_value"},
    ("devices", "Plug relay (1 = on)", "A"): {"device", "_value"},
    ("devices", "Commands issued", "A"): {"command", "_value"},
    ("devices", "Commands waiting for an ack", "A"): {"telestack_actuator_commands_in_flight"},
    ("devices", "Fermenter setpoints", "A"): {"device", "_value"},
    ("pipeline-health", "Services reporting", "A"): {"service", "last_scrape", "age_s"},
    ("pipeline-health", "Points per second, per stage", "A"): {
        "telestack_can_gateway_lines_total",
        "telestack_mqtt_bridge_points_total",
        "telestack_influx_writer_lines_written_total",
        "telestack_alerting_points_total",
    },
    ("pipeline-health", "Kafka consumer lag", "A"): {"group", "topic"},
    ("pipeline-health", "CAN frames per second, per bus", "A"): {"bus"},
    ("pipeline-health", "Dead letters and DLQ records (total)", "A"): {"telestack_influx_writer_dlq_records_total"},
    ("pipeline-health", "InfluxDB writes and write errors (per second)", "A"): {
        "telestack_influx_writer_batches_written_total"
    },
    ("pipeline-health", "CAN gateway spool", "A"): {
        "telestack_can_gateway_spool_depth_records",
        "telestack_can_gateway_kafka_up",
    },
    ("pipeline-health", "MQTT bridge", "A"): {
        "telestack_mqtt_bridge_messages_received_total",
        "telestack_mqtt_bridge_messages_acked_total",
    },
    ("pipeline-health", "MQTT bridge", "B"): {"telestack_mqtt_bridge_connected"},
    ("pipeline-health", "Writer backpressure", "A"): {"telestack_influx_writer_in_flight_batches"},
    ("pipeline-health", "Alert instances by state", "A"): {"state"},
}
# Rows that must appear in some results, beyond the fields: (dashboard, panel, refId) → (column, values).
EXPECTED_ROWS: dict[tuple[str, str, str], tuple[str, set[str]]] = {
    ("devices", "Last seen", "A"): ("device", {"f1", "f2", "f3", "compteur-1", "plug-1"}),
    ("devices", "Command outcomes (since the actuator started)", "A"): ("state", {"acked"}),
    ("pipeline-health", "Services reporting", "A"): (
        "service",
        {"can-gateway", "mqtt-bridge", "influx-writer", "alerting", "kafka-lag", "actuator"},
    ),
    ("pipeline-health", "Kafka consumer lag", "A"): ("group", {"telestack-influx-writer", "telestack-alerting"}),
    ("pipeline-health", "CAN frames per second, per bus", "A"): ("bus", {"powertrain", "chassis", "battery"}),
    ("fermentation", "Alerts", "A"): ("state", {"firing"}),
}


def _targets() -> list[tuple[str, str, str, str, str | None]]:
    """(dashboard, panel title, refId, query, the variable the panel repeats over)."""
    found = []
    for name, dashboard in DASHBOARDS.items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                found.append((name, panel["title"], target["refId"], target["query"], panel.get("repeat")))
    return found


TARGETS = _targets()


def test_the_five_dashboards_exist_with_unique_uids() -> None:
    assert set(DASHBOARDS) == EXPECTED_FILES
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)
    assert {d["title"] for d in DASHBOARDS.values()} == {
        "Vehicle",
        "Fermentation",
        "Energy",
        "Devices & commands",
        "Pipeline health",
    }


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_reads_the_provisioned_datasource(name: str) -> None:
    dashboard = DASHBOARDS[name]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "influxdb", "uid": "influxdb"}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            # Grafana's provisioning does not expand ${ENV} in dashboard files: only dashboard variables.
            names = {v["name"] for v in dashboard["templating"]["list"]}
            used = set(re.findall(r"\$\{(\w+)", target["query"]))
            assert used <= names, f"{panel['title']}: undefined variables {used - names}"


def test_every_query_has_an_expectation() -> None:
    assert {(n, t, r) for n, t, r, _, _ in TARGETS} == set(EXPECTED)


def test_the_fermentation_dashboard_shows_alerts_as_annotations() -> None:
    annotations = [a for a in DASHBOARDS["fermentation"]["annotations"]["list"] if "target" in a]
    assert len(annotations) == 1
    assert 'r._measurement == "alerts"' in annotations[0]["target"]["query"]


def test_the_devices_dashboard_links_to_the_actuator_page() -> None:
    links = [link["url"] for link in DASHBOARDS["devices"]["links"] if link.get("type") == "link"]
    assert links == ["${actuator_url}/ui"]


@pytest.fixture(scope="module")
def variables(filled_demo: DemoInfo, influx_reader: httpx.Client) -> dict[str, dict[str, list[str]]]:
    influx = filled_demo.endpoints.influx
    return {name: resolve_variables(d, influx_reader, influx.url, influx.org) for name, d in DASHBOARDS.items()}


@pytest.mark.parametrize(
    ("name", "title", "ref_id", "query", "repeat"), TARGETS, ids=[f"{t[0]}:{t[1]}:{t[2]}" for t in TARGETS]
)
def test_panel_query_returns_its_series(
    name: str,
    title: str,
    ref_id: str,
    query: str,
    repeat: str | None,
    filled_demo: DemoInfo,
    influx_reader: httpx.Client,
    variables: dict[str, dict[str, list[str]]],
) -> None:
    influx = filled_demo.endpoints.influx
    values = dict(variables[name])
    if repeat is not None:  # Grafana draws one panel per value, each with that single value
        values[repeat] = values[repeat][-1:]
    result = run_flux(influx_reader, influx.url, influx.org, with_time_range(interpolate(query, values)))
    assert result.rows, f"{name} / {title} / {ref_id}: no data"
    present = result.columns | result.values("_field")
    expected = EXPECTED[(name, title, ref_id)]
    if expected is None:  # the signal explorer: only signals the viewer chose
        assert result.values("_field") <= set(values["signal"]), result.values("_field")
    else:
        assert expected <= present, f"{name} / {title}: missing {expected - present}; got {sorted(present)}"
    if (name, title, ref_id) in EXPECTED_ROWS:
        column, wanted = EXPECTED_ROWS[(name, title, ref_id)]
        assert wanted <= result.values(column), f"{title}: {column} {wanted - result.values(column)} missing"


def test_fermentation_annotations_return_the_alert(
    filled_demo: DemoInfo, influx_reader: httpx.Client, variables: dict[str, dict[str, list[str]]]
) -> None:
    influx = filled_demo.endpoints.influx
    annotation: dict[str, Any] = next(a for a in DASHBOARDS["fermentation"]["annotations"]["list"] if "target" in a)
    query = with_time_range(interpolate(annotation["target"]["query"], variables["fermentation"]))
    result = run_flux(influx_reader, influx.url, influx.org, query)
    assert {"_time", "text", "title"} <= result.columns
    titles = result.values("title")
    assert "firing fermenter_setpoint" in titles, titles
    assert any("f2" in text and "12.0" in text for text in result.values("text")), result.values("text")

"""telegraf/: the stack's Telegraf and the edge-agent examples, run by a real Telegraf.

Telegraf is built by `make setup` from its Go module at the version .env.example pins (TELEGRAF_IMAGE), with only
the plugins telestack uses (Telegraf's `custom` build tags), into $TELESTACK_CACHE (install-telegraf.sh).
- every config loads with strict environment handling and produces the expected points (fake devices);
- the stack config scrapes the demo's services into InfluxDB in the very shape `telestack demo` writes
  (the Pipeline health dashboard reads either);
- the edge agents feed the demo's Kafka `telemetry` topic, and their points reach InfluxDB through the
  influx-writer next to the MQTT path's (same measurement, tags and field types, or InfluxDB would refuse them).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from telestack.core.errors import ServerError
from telestack.core.lineproto import parse_line
from telestack.demo.stack import SERVICE_PORTS, DemoInfo
from telestack.native.servers import run_script
from tests.polling import wait_until
from tests.stack.fake_devices import FakeDevices, register_value
from tests.stack.flux import run_flux

ROOT = Path(__file__).resolve().parents[2]
TELEGRAF = ROOT / "telegraf"


@pytest.fixture(scope="module")
def telegraf() -> Path:
    """The Telegraf that `make setup` built (services/telestack/native/scripts/install-telegraf.sh)."""
    try:
        return Path(run_script("install-telegraf.sh", env={"TELESTACK_NO_BUILD": "1"}))
    except ServerError as exc:
        pytest.fail(f"{exc}: Telegraf is built by 'make setup', never inside a test")


def _run(telegraf: Path, config: Path, env: dict[str, str], *mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(telegraf), "--strict-env-handling", "--config", str(config), *mode],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _local_copy(config: Path, tmp_path: Path) -> Path:
    """The config with its disk buffer in `tmp_path` (an edge box keeps it in /var/lib/telegraf/buffer)."""
    copy = tmp_path / config.name
    copy.write_text(config.read_text().replace("/var/lib/telegraf/buffer", str(tmp_path / "buffer")))
    return copy


def _points(output: str) -> list:  # type: ignore[type-arg]
    return [parse_line(line[2:]) for line in output.splitlines() if line.startswith("> ")]


# --- each config in Telegraf's --test mode (inputs, processors, aggregators; points printed) ---------------


def test_ecodevices_agent_reads_teleinfo_like_the_mqtt_path(telegraf: Path) -> None:
    with FakeDevices() as devices:
        env = {"ECODEVICES_URL": devices.http_url, "DEVICE": "compteur-9", "KAFKA_BROKERS": "127.0.0.1:9"}
        proc = _run(telegraf, TELEGRAF / "edge" / "ecodevices.conf", env, "--test")
    assert proc.returncode == 0, proc.stderr
    [point] = _points(proc.stdout)
    assert point.measurement == "teleinfo"
    assert point.tags == {"device": "compteur-9", "product": "Eco-devices"}  # as the bridge's rule: no url tag
    assert point.fields["T1_PAPP"] == 130 and type(point.fields["T1_PAPP"]) is int
    assert point.fields["T1_BASE"] == 1875395 and type(point.fields["T1_BASE"]) is int
    assert point.fields["T1_PTEC"] == "TH.."


def test_mystrom_agent_reads_the_plug_report(telegraf: Path) -> None:
    with FakeDevices() as devices:
        env = {"MYSTROM_URL": devices.http_url, "DEVICE": "plug-9", "KAFKA_BROKERS": "127.0.0.1:9"}
        proc = _run(telegraf, TELEGRAF / "edge" / "mystrom.conf", env, "--test")
    assert proc.returncode == 0, proc.stderr
    [point] = _points(proc.stdout)
    assert (point.measurement, point.tags) == ("plug", {"device": "plug-9"})
    assert point.fields == {"power": 12.3, "Ws": 11.9, "relay": True, "temperature": 22.6}


def test_modbus_agent_aggregates_mean_min_max(telegraf: Path, tmp_path: Path) -> None:
    with FakeDevices() as devices:
        env = {"SITE": "hq", "BOX": "box-9", "MODBUS_GATEWAY": devices.modbus_url, "KAFKA_BROKERS": "127.0.0.1:9"}
        proc = _run(telegraf, _local_copy(TELEGRAF / "edge" / "modbus.conf", tmp_path), env, "--test")
    assert proc.returncode == 0, proc.stderr
    points = {p.measurement: p for p in _points(proc.stdout)}
    assert set(points) == {"energy", "room"}
    room = points["room"]
    assert room.tags == {"site": "hq", "device": "box-9", "sensor": "room-1", "slave_id": "2"}
    # input register 0 of unit 2, scaled by 0.1; the basicstats aggregates replace the raw reading
    assert room.fields["temperature_c_mean"] == pytest.approx(register_value(2, 0) * 0.1)
    assert {"temperature_c_mean", "temperature_c_min", "temperature_c_max", "co2_ppm_max"} <= set(room.fields)
    assert "temperature_c" not in room.fields
    assert points["energy"].fields["energy_wh_max"] == register_value(1, 2) * 65536 + register_value(1, 3)


CONFIGS = sorted(TELEGRAF.rglob("*.conf"))
CONFIG_ENV = {
    "INFLUX_URL": "http://127.0.0.1:9",
    "INFLUX_TOKEN": "t",
    "INFLUX_ORG": "o",
    "INFLUX_BUCKET": "b",
    "KAFKA_BROKERS": "127.0.0.1:9",
    "SITE": "hq",
    "BOX": "box-1",
    "MODBUS_GATEWAY": "tcp://127.0.0.1:9",
    "ECODEVICES_URL": "http://127.0.0.1:9",
    "MYSTROM_URL": "http://127.0.0.1:9",
    "DEVICE": "d",
}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(TELEGRAF)))
def test_every_config_passes_telegraf_config_check(telegraf: Path, config: Path, tmp_path: Path) -> None:
    """Unknown options, wrong types and unknown plugins fail `telegraf config check`."""
    proc = subprocess.run(
        [str(telegraf), "config", "check", "--config", str(_local_copy(config, tmp_path))],
        env={"PATH": os.environ.get("PATH", ""), **CONFIG_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_stack_config_scrapes_every_service() -> None:
    text = (TELEGRAF / "telegraf.conf").read_text()
    for service, port in SERVICE_PORTS.items():
        assert f'"http://{service}:{port}/metrics"' in text, service


# --- against the demo: real services, Kafka and InfluxDB -----------------------------------------------------


def test_stack_telegraf_writes_what_the_demo_scraper_writes(
    telegraf: Path, filled_demo: DemoInfo, influx_reader: httpx.Client, tmp_path: Path
) -> None:
    text = (TELEGRAF / "telegraf.conf").read_text()
    for service, port in SERVICE_PORTS.items():
        text = text.replace(f"http://{service}:{port}/", f"http://127.0.0.1:{filled_demo.ports[service]}/")
    text = text.replace('service_address = "http://:8888"', 'service_address = "http://127.0.0.1:0"')
    config = tmp_path / "telegraf.conf"
    config.write_text(text)
    influx = filled_demo.endpoints.influx
    env = {
        "INFLUX_URL": influx.url,
        "INFLUX_TOKEN": filled_demo.writer_token,  # the scoped token compose gives Telegraf
        "INFLUX_ORG": influx.org,
        "INFLUX_BUCKET": influx.bucket,
    }

    def fields(url: str, source_filter: str) -> set[str]:
        query = (
            f'from(bucket: "{influx.bucket}") |> range(start: -10m)'
            f' |> filter(fn: (r) => r._measurement == "prometheus" and r.url == "{url}" and {source_filter})'
            ' |> keep(columns: ["_field", "service"]) |> distinct(column: "_field")'
        )
        return run_flux(influx_reader, influx.url, influx.org, query).values("_value")

    def scrape_once() -> bool:
        proc = _run(telegraf, config, env, "--once")
        assert proc.returncode == 0, proc.stderr
        urls = [f"http://127.0.0.1:{filled_demo.ports[name]}/metrics" for name in ("influx-writer", "kafka-lag")]
        return all(fields(url, 'r.source == "telegraf"') for url in urls)

    wait_until(scrape_once, timeout_s=60, interval_s=1, what="Telegraf's scrape in InfluxDB")

    for service in ("influx-writer", "kafka-lag", "mqtt-bridge"):
        url = f"http://127.0.0.1:{filled_demo.ports[service]}/metrics"
        by_telegraf = fields(url, 'r.source == "telegraf"')
        by_demo = fields(url, "not exists r.source")
        assert by_telegraf, f"Telegraf wrote nothing for {service}"
        assert by_telegraf <= by_demo, f"{service}: only Telegraf has {by_telegraf - by_demo}"
        assert len(by_telegraf) >= len(by_demo) - 3, f"{service}: Telegraf lacks {by_demo - by_telegraf}"
    # processors.regex: the `service` tag is the URL's host (in compose: the service's name)
    services = run_flux(
        influx_reader,
        influx.url,
        influx.org,
        f'from(bucket: "{influx.bucket}") |> range(start: -10m) |> filter(fn: (r) => r.source == "telegraf")'
        ' |> keep(columns: ["service"]) |> distinct(column: "service")',
    ).values("_value")
    assert services == {"127.0.0.1"}


def test_edge_agents_feed_the_telemetry_topic(
    telegraf: Path, filled_demo: DemoInfo, influx_reader: httpx.Client, tmp_path: Path
) -> None:
    influx = filled_demo.endpoints.influx
    suffix = uuid.uuid4().hex[:6]
    kafka = filled_demo.endpoints.kafka.bootstrap_servers

    def found(measurement: str, device: str, field: str) -> bool:
        query = (
            f'from(bucket: "{influx.bucket}") |> range(start: -10m)'
            f' |> filter(fn: (r) => r._measurement == "{measurement}" and r.device == "{device}"'
            f' and r._field == "{field}")'
        )
        return bool(run_flux(influx_reader, influx.url, influx.org, query).rows)

    with FakeDevices() as devices:
        for name, env in {
            "ecodevices.conf": {"ECODEVICES_URL": devices.http_url, "DEVICE": f"meter-{suffix}"},
            "mystrom.conf": {"MYSTROM_URL": devices.http_url, "DEVICE": f"plug-{suffix}"},
        }.items():
            proc = _run(telegraf, TELEGRAF / "edge" / name, {**env, "KAFKA_BROKERS": kafka}, "--once")
            assert proc.returncode == 0, f"{name}: {proc.stderr}"
        # The Modbus agent runs as on a box (its disk buffer does not support --once): readings every second,
        # aggregated every 2 s, buffered in a directory of the test.
        config = _local_copy(TELEGRAF / "edge" / "modbus.conf", tmp_path)
        text = config.read_text().replace('interval = "10s"', 'interval = "1s"')
        config.write_text(text.replace('flush_interval = "30s"', 'flush_interval = "1s"').replace("5m", "2s"))
        env = {"SITE": "hq", "BOX": f"box-{suffix}", "MODBUS_GATEWAY": devices.modbus_url, "KAFKA_BROKERS": kafka}
        agent = subprocess.Popen(
            [str(telegraf), "--config", str(config)],
            env={"PATH": os.environ.get("PATH", ""), **env},
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "modbus.log", "wb"),  # noqa: SIM115 - closed with the process
        )
        try:
            wait_until(
                lambda: found("room", f"box-{suffix}", "temperature_c_mean"), timeout_s=45, what="Modbus aggregates"
            )
        finally:
            agent.terminate()
            agent.wait(15)

    # T1_PAPP is already an integer field in this bucket (the simulated meter over MQTT): a float would be refused
    wait_until(lambda: found("teleinfo", f"meter-{suffix}", "T1_PAPP"), timeout_s=30, what="Eco-devices reading")
    wait_until(lambda: found("plug", f"plug-{suffix}", "relay"), timeout_s=30, what="myStrom report")

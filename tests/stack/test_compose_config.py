"""`docker compose config` without Docker: the compose files loaded by compose-go, the loader of the docker compose
CLI itself (interpolation from .env, profiles, extends, override files, validation), built from its Go module.

`tests/stack/composecheck/` is a 60-line Go program around compose-go v2.16.2 (the version whose JSON schema is in
tests/data); it is built once into $TELESTACK_CACHE with the Go toolchain the InfluxDB build installs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).parent / "composecheck"
INFRA = {"mosquitto", "kafka", "influxdb", "grafana", "telegraf"}
JOBS = {"kafka-topics", "influx-init"}
SERVICES = {"mqtt-bridge", "influx-writer", "downsampler", "alerting", "actuator", "kafka-lag"}
SIMULATORS = {"simulate-vehicle", "simulate-fermenters", "simulate-energy-meter", "simulate-smart-plug"}


@pytest.fixture(scope="module")
def composecheck() -> Path:
    """The real `docker compose` plugin (`make setup` builds it from its Go module): its `config` needs no engine."""
    plugin = Path.home() / ".docker" / "cli-plugins" / "docker-compose"
    assert plugin.exists(), "the compose plugin is missing: `make setup` (make docker-up) installs it"
    return plugin


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    """.env as `make env` writes it (run in a copy: .env.example with every empty secret generated)."""
    shutil.copy(ROOT / ".env.example", tmp_path / ".env.example")
    proc = subprocess.run(
        ["make", "-s", "-f", str(ROOT / "Makefile"), "env"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    path = tmp_path / ".env"
    assert path.stat().st_mode & 0o077 == 0, ".env holds secrets: owner-only"
    return path


def _compose(binary: Path, env_file: Path, *files: str, profiles: str = "") -> list[str]:
    args = [str(binary), "--project-directory", str(ROOT), "--env-file", str(env_file), "-p", "telestack"]
    for file in files or ("docker-compose.yml",):
        args += ["-f", str(ROOT / file)]
    for profile in filter(None, profiles.split(",")):
        args += ["--profile", profile]
    return args


def _config(binary: Path, env_file: Path, *files: str, profiles: str = "") -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("COMPOSE_")}
    proc = subprocess.run(
        [*_compose(binary, env_file, *files, profiles=profiles), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_the_demo_profile_runs_everything(composecheck: Path, env_file: Path) -> None:
    project = _config(composecheck, env_file, profiles="demo")
    assert set(project["services"]) == INFRA | JOBS | SERVICES | {"can-gateway"} | SIMULATORS
    writer = project["services"]["influx-writer"]
    assert writer["depends_on"]["influx-init"]["condition"] == "service_completed_successfully"
    # the scoped token reaches the writer through its entrypoint, never through .env
    assert "writer.token" in " ".join(writer["entrypoint"])
    assert "TELESTACK_INFLUX__TOKEN" not in writer["environment"]
    vehicle = project["services"]["simulate-vehicle"]
    assert vehicle["network_mode"] == "service:can-gateway"
    published = {
        name: sorted(str(p["published"]) for p in service.get("ports", []))
        for name, service in project["services"].items()
        if service.get("ports")
    }
    assert published == {"grafana": ["3000"], "actuator": ["8080"], "mosquitto": ["1883", "8883"]}
    # Issue 16: devices (and the simulated ones, each its own login) on 1883, where the client id is the login;
    # services on 1884, never published.
    services = project["services"]
    mqtt_users = {name: s["environment"] for name, s in services.items() if "TELESTACK_MQTT__HOST" in s["environment"]}
    ports = {name: env["TELESTACK_MQTT__PORT"] for name, env in mqtt_users.items()}
    assert {name for name, port in ports.items() if port == "1883"} == SIMULATORS - {"simulate-vehicle"}
    assert {name for name, port in ports.items() if port == "1884"} >= {"mqtt-bridge", "actuator", "alerting"}
    assert set(ports.values()) == {"1883", "1884"}
    assert not any("TELESTACK_MQTT__USERNAME" in mqtt_users[name] for name in SIMULATORS - {"simulate-vehicle"})
    simulated = {
        device
        for name in SIMULATORS - {"simulate-vehicle"}
        for device in services[name]["command"][services[name]["command"].index("--devices") + 1].split(",")
    }
    assert set(services["mosquitto"]["environment"]["MQTT_SIMULATED_DEVICES"].split()) == simulated


def test_without_profiles_only_the_stack_runs(composecheck: Path, env_file: Path) -> None:
    """Real devices only: no simulator, no CAN gateway, and the simulator's password is not needed."""
    text = re.sub(r"^MQTT_SIMULATOR_PASSWORD=.*$", "MQTT_SIMULATOR_PASSWORD=", env_file.read_text(), flags=re.M)
    env_file.write_text(text.replace("COMPOSE_PROFILES=demo", "COMPOSE_PROFILES="))
    project = _config(composecheck, env_file)
    assert set(project["services"]) == INFRA | JOBS | SERVICES


def test_the_can_profile_adds_the_gateway_alone(composecheck: Path, env_file: Path) -> None:
    project = _config(composecheck, env_file, profiles="can")
    assert set(project["services"]) == INFRA | JOBS | SERVICES | {"can-gateway"}


def test_the_scale_override_merges(composecheck: Path, env_file: Path) -> None:
    project = _config(composecheck, env_file, "docker-compose.yml", "docker-compose.scale.yml", profiles="demo")
    services = project["services"]
    assert {"kafka-2", "kafka-3", "mqtt-bridge-2", "mqtt-bridge-3"} <= set(services)
    assert services["influx-writer"]["deploy"]["replicas"] == 3
    assert services["kafka"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] == (
        "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
    )
    bridge = services["mqtt-bridge-3"]  # extends the base bridge: its healthcheck, ACL user and dependencies
    assert bridge["environment"]["TELESTACK_MQTT__USERNAME"] == "mqtt-bridge"
    assert bridge["healthcheck"]["test"][-1].endswith("u.urlopen('http://127.0.0.1:9102/healthz', timeout=4)")
    assert set(bridge["depends_on"]) == {"kafka-topics", "influx-init", "mosquitto"}
    assert set(services["kafka-topics"]["depends_on"]) == {"kafka", "kafka-2", "kafka-3"}


def test_an_unfilled_env_names_every_missing_secret(composecheck: Path, tmp_path: Path) -> None:
    """`docker compose` on .env.example as is refuses to start, naming a missing secret; filled one by one as
    named, every secret the stack needs is named in turn, then the project loads."""
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text())
    named: list[str] = []
    for _ in range(20):
        proc = subprocess.run(
            [*_compose(composecheck, env_file), "config", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode == 0:
            break
        missing = re.search(r"set (\w+) in \.env", proc.stderr)
        assert missing, proc.stderr
        named.append(missing.group(1))
        env_file.write_text(
            re.sub(
                rf"^{missing.group(1)}=$", f"{missing.group(1)}=filled-{len(named)}", env_file.read_text(), flags=re.M
            )
        )
    assert proc.returncode == 0, proc.stderr
    assert set(named) >= {
        "INFLUXDB_ADMIN_PASSWORD",
        "INFLUXDB_ADMIN_TOKEN",
        "MQTT_BRIDGE_PASSWORD",
        "MQTT_ACTUATOR_PASSWORD",
        "MQTT_ALERTING_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    }, named


def test_the_can_override_reaches_kafka_over_loopback(composecheck: Path, env_file: Path) -> None:
    project = _config(composecheck, env_file, "docker-compose.yml", "docker-compose.can.yml", profiles="can")
    gateway = project["services"]["can-gateway"]
    assert gateway["network_mode"] == "host"
    assert gateway["environment"]["TELESTACK_KAFKA__BOOTSTRAP_SERVERS"] == "127.0.0.1:9094"
    kafka = project["services"]["kafka"]
    assert [(p["host_ip"], str(p["published"])) for p in kafka["ports"]] == [("127.0.0.1", "9094")]
    assert "HOST://127.0.0.1:9094" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]

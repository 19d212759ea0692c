"""docker-compose.yml, checked without a Docker engine: schema, commands, variables, ports, healthchecks.

`tests/data/compose-spec.json` is the compose specification's schema, from the Go module
github.com/compose-spec/compose-go/v2 (v2.16.2, schema/compose-spec.json), the code `docker compose` itself uses.
"""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

import telestack
from telestack.cli import COMMANDS
from telestack.core.settings import ENV_NESTED_DELIMITER, ENV_PREFIX, TelestackSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = sorted(ROOT.glob("docker-compose*.yml"))


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _settings_classes() -> list[type[TelestackSettings]]:
    for module in pkgutil.walk_packages(telestack.__path__, "telestack."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: list[type[TelestackSettings]] = []
    pending: list[type[TelestackSettings]] = [TelestackSettings]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _has_path(model: type[BaseModel], path: list[str]) -> bool:
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
    return any(isinstance(c, type) and issubclass(c, BaseModel) and _has_path(c, path[1:]) for c in candidates)


def _notifier_secret_variables() -> set[str]:
    """Environment variables the alert rules files name for their notifiers' secrets (`*_env` keys)."""
    names: set[str] = set()
    for path in ROOT.glob("config/alerts*.yaml"):
        names.update(re.findall(r"\b\w+_env:\s*([A-Z][A-Z0-9_]+)", path.read_text()))
    return names


@functools.cache
def _compose_spec() -> Any:
    """A validator for the compose specification, the schema itself checked once (jsonschema.validate checks it on
    every call: 0.3-0.5 s each)."""
    schema = json.loads((ROOT / "tests/data/compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


def _validate(document: Any) -> None:
    """As jsonschema.validate: raises the most relevant error, if any."""
    if (error := jsonschema.exceptions.best_match(_compose_spec().iter_errors(document))) is not None:
        raise error


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_the_specification(path: Path) -> None:
    _validate(_load(path))


def _one_shot_jobs(compose: dict[str, Any]) -> set[str]:
    """Services others wait for with `service_completed_successfully`: init jobs that run once and exit."""
    jobs: set[str] = set()
    for service in compose["services"].values():
        depends = service.get("depends_on", {})
        if isinstance(depends, dict):
            jobs.update(
                name for name, dep in depends.items() if dep.get("condition") == "service_completed_successfully"
            )
    return jobs


def test_every_service_has_a_healthcheck_and_restart_policy() -> None:
    compose = _load(ROOT / "docker-compose.yml")
    anchors = compose.get("x-telestack", {})
    jobs = _one_shot_jobs(compose)
    assert {"kafka-topics", "influx-init"} <= jobs
    for name, service in compose["services"].items():
        merged = {**anchors, **service} if service.get("image", "").startswith("telestack") else service
        if name in jobs:
            # a one-shot job is done when it exits 0; restarting it or probing it would mean nothing
            assert merged.get("restart") == "no", f"one-shot job {name} must not be restarted"
            continue
        assert "healthcheck" in merged, f"service {name} has no healthcheck"
        assert not merged["healthcheck"].get("disable"), f"service {name} disables its healthcheck"
        assert merged["healthcheck"].get("test"), f"service {name}: healthcheck without a test"
        assert merged.get("restart") or service.get("deploy", {}).get("restart_policy"), f"{name}: no restart policy"


def test_published_ports_do_not_collide_and_are_commented() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    published: list[str] = []
    for name, service in _load(ROOT / "docker-compose.yml")["services"].items():
        for port in service.get("ports", []):
            host_port = str(port).split(":")[-2] if ":" in str(port) else str(port)
            published.append(host_port)
            assert re.search(rf'"[^"\n]*{re.escape(str(port))}"\s+#\s*\S', text), f"{name}: port {port} needs a comment"
    assert len(published) == len(set(published)), f"host ports collide: {published}"


def test_every_telestack_command_exists_in_the_cli() -> None:
    from telestack.simulators.command import KINDS

    compose = _load(ROOT / "docker-compose.yml")
    checked = 0
    for name, service in compose["services"].items():
        if not str(service.get("image", "")).startswith("telestack"):
            continue
        command = service.get("command")
        invocations: list[list[str]] = []
        if command:
            invocations.append(command if isinstance(command, list) else command.split())
        # commands run by a shell entrypoint (influx-init): `telestack <command>` inside the script
        script = " ".join(str(part) for part in service.get("entrypoint") or [])
        invocations += [[word] for word in re.findall(r"\btelestack ([a-z][a-z-]+)", script)]
        for words in invocations:
            assert words[0] in COMMANDS, f"service {name} runs 'telestack {words[0]}', which does not exist"
            if words[0] == "simulate":
                assert words[1] in KINDS, f"service {name} simulates {words[1]!r}, not a kind of {sorted(KINDS)}"
            checked += 1
    assert checked >= 10


def test_every_telestack_variable_maps_to_a_setting() -> None:
    classes = _settings_classes()
    names: set[str] = set()
    for path in [*COMPOSE_FILES, ROOT / ".env.example"]:
        names.update(re.findall(rf"\b{ENV_PREFIX}[A-Z0-9_]+", path.read_text()))
    names.discard("TELESTACK_VERSION")  # the image tag, not a setting
    names -= _notifier_secret_variables()  # secrets a rules file names (alerting reads them itself)
    assert names, "no TELESTACK_* variable found"
    for name in sorted(names):
        path = name.removeprefix(ENV_PREFIX).lower().split(ENV_NESTED_DELIMITER)
        assert any(_has_path(cls, path) for cls in classes), f"{name} matches no settings field"


def test_env_example_has_no_secret_values() -> None:
    for line in (ROOT / ".env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            if re.search(r"PASSWORD|TOKEN|SECRET", key):
                assert value == "", f"{key} must be empty in .env.example"


# --- the stack as a whole (issue 8) ------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def _env_example() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line]
    return {key: value for key, value in pairs if not key.startswith("#")}


def _filled_env() -> dict[str, str]:
    """.env.example with every empty secret filled, as `make env` does."""
    return {
        key: (value or f"generated-{key.lower()}" if re.search("PASSWORD|TOKEN|SECRET", key) else value)
        for key, value in _env_example().items()
    }


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $$."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name)
        if op in (":-", "-"):
            return value if value or (op == "-" and value is not None) else arg
        if op in (":?", "?") and not value and not (op == "?" and value is not None):
            raise AssertionError(f"${{{name}}} is required: {arg}")
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def _merged_services() -> dict[str, dict[str, Any]]:
    return _load(ROOT / "docker-compose.yml")["services"]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_env_example_defines_every_required_variable(path: Path) -> None:
    """cp .env.example .env + the secrets is enough: the files interpolate and still match the schema."""
    text = _interpolate(path.read_text(), _filled_env())
    assert "${" not in text.replace("$${", "")
    _validate(yaml.safe_load(text))


def test_images_are_pinned() -> None:
    env = _env_example()
    images = {key: value for key, value in env.items() if key.endswith("_IMAGE")}
    assert set(images) == {
        "PYTHON_IMAGE",  # the telestack image's base (a build argument)
        "KAFKA_IMAGE",
        "MOSQUITTO_IMAGE",
        "INFLUXDB_IMAGE",
        "GRAFANA_IMAGE",
        "TELEGRAF_IMAGE",
    }
    for key, image in images.items():
        assert re.fullmatch(r"[\w./-]+:\d+(\.\d+)+(-slim)?", image), f"{key}={image} is not pinned to a version"
    assert env["TELESTACK_VERSION"] == telestack.__version__
    for name, service in _merged_services().items():
        image = service.get("image", "")
        assert re.fullmatch(r"\$\{[A-Z_]+_IMAGE:\?[^}]+\}|telestack:\$\{TELESTACK_VERSION:-[\d.]+\}", image), (
            f"{name}: image {image!r} must come from a pinned *_IMAGE variable of .env.example"
        )


def test_only_grafana_the_actuator_and_mqtt_are_published() -> None:
    published = {name for name, service in _merged_services().items() if service.get("ports")}
    assert published == {"grafana", "actuator", "mosquitto"}
    for path in [p for p in COMPOSE_FILES if p.name != "docker-compose.yml"]:
        for name, service in _load(path)["services"].items():
            for port in service.get("ports", []):  # an override may open a port to this machine, never outside
                assert str(port).startswith("127.0.0.1:"), f"{path.name}: {name} publishes {port} beyond loopback"


def test_volumes_are_named_and_declared() -> None:
    compose = _load(ROOT / "docker-compose.yml")
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
                continue
            assert ":" in str(volume), f"{name}: anonymous volume {volume}"
            assert source in declared, f"{name} uses undeclared volume {source}"
            used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"


def test_services_wait_for_healthy_dependencies() -> None:
    services = _merged_services()
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must name a condition for each dependency"
        for dependency, spec in depends.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert spec.get("condition") in ("service_healthy", "service_completed_successfully"), (name, dependency)
    for name in ("mqtt-bridge", "influx-writer", "alerting", "actuator"):
        assert services[name]["depends_on"]["kafka-topics"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["influx-init"]["condition"] == "service_completed_successfully"


def test_simulators_run_in_the_demo_profile_only() -> None:
    services = _merged_services()
    simulators = {name for name in services if name.startswith("simulate-")}
    assert simulators == {"simulate-vehicle", "simulate-fermenters", "simulate-energy-meter", "simulate-smart-plug"}
    for name, service in services.items():
        profiles = set(service.get("profiles", []))
        if name in simulators:
            assert profiles == {"demo"}, name
        elif name == "can-gateway":
            assert profiles == {"demo", "can"}
        else:
            assert not profiles, f"{name} must run without a profile"
    assert _env_example()["COMPOSE_PROFILES"] == "demo", "the quick start runs the demo"


def test_scale_override_replicates_kafka_and_runs_replicas() -> None:
    scale = _load(ROOT / "docker-compose.scale.yml")["services"]
    brokers = {
        name: s for name, s in scale.items() if name == "kafka" or (name.startswith("kafka-") and name[6:].isdigit())
    }
    assert len(brokers) == 3
    assert len({b["environment"]["CLUSTER_ID"] for b in brokers.values()}) == 1
    assert {str(b["environment"]["KAFKA_NODE_ID"]) for b in brokers.values()} == {"1", "2", "3"}
    for broker in brokers.values():
        assert broker["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 3
        assert str(broker["environment"]["KAFKA_MIN_INSYNC_REPLICAS"]) == "2"
        assert str(broker["environment"]["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == "3"
    layout = scale["kafka-topics"]["environment"]
    assert layout["TELESTACK_TOPIC_LAYOUT__REPLICATION_FACTOR"] == "3"
    assert layout["TELESTACK_TOPIC_LAYOUT__MIN_INSYNC_REPLICAS"] == "2"
    assert scale["influx-writer"]["deploy"]["replicas"] >= 2
    bridges = {name: s for name, s in scale.items() if name.startswith("mqtt-bridge")}
    assert len(bridges) >= 2
    ids = {s["environment"]["TELESTACK_MQTT_BRIDGE__CLIENT_ID"] for s in bridges.values()}
    assert len(ids) == len(bridges), "each bridge replica needs its own MQTT client id (its persistent session)"
    assert {s["environment"]["TELESTACK_MQTT_BRIDGE__SHARE_GROUP"] for s in bridges.values()} == {"bridges"}
    servers = {s["environment"]["TELESTACK_KAFKA__BOOTSTRAP_SERVERS"] for n, s in scale.items() if n not in brokers}
    assert servers == {"kafka:9092,kafka-2:9092,kafka-3:9092"}


def _settings_class(words: list[str]) -> type[TelestackSettings]:
    from telestack.actuator.settings import ActuatorSettings
    from telestack.alerting.settings import AlertingSettings
    from telestack.can_gateway.settings import CanGatewaySettings
    from telestack.influx_writer.settings import DownsamplerSettings, InfluxToolSettings, WriterSettings
    from telestack.kafka_admin.lag_command import LagSettings
    from telestack.kafka_admin.topics import TopicsSettings
    from telestack.mqtt_bridge.settings import BridgeSettings
    from telestack.simulators.mqtt_device import MqttSimulatorSettings
    from telestack.simulators.vehicle import VehicleSimulatorSettings

    by_command: dict[str, type[TelestackSettings]] = {
        "mqtt-bridge": BridgeSettings,
        "influx-writer": WriterSettings,
        "influx-init": InfluxToolSettings,
        "downsample": DownsamplerSettings,
        "alerting": AlertingSettings,
        "actuator": ActuatorSettings,
        "can-gateway": CanGatewaySettings,
        "kafka-lag": LagSettings,
        "topics": TopicsSettings,
        "simulate vehicle": VehicleSimulatorSettings,
    }
    key = " ".join(words[:2]) if words[0] == "simulate" else words[0]
    return by_command.get(key, MqttSimulatorSettings if words[0] == "simulate" else TelestackSettings)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_service_environment_loads_into_its_settings(
    path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The TELESTACK_* values a container gets (after interpolation) are valid for its command's settings."""
    from telestack.core.settings import load_settings

    base = yaml.safe_load(_interpolate((ROOT / "docker-compose.yml").read_text(), _filled_env()))["services"]
    services = yaml.safe_load(_interpolate(path.read_text(), _filled_env()))["services"]
    monkeypatch.chdir(tmp_path)  # no .env of the working tree
    loaded = 0
    for name, service in services.items():
        origin = base.get(name) or base.get(service.get("extends", {}).get("service", ""), {})
        image = str(service.get("image") or origin.get("image", ""))
        if not image.startswith("telestack"):
            continue
        command = service.get("command") or origin.get("command")
        script = " ".join(str(p) for p in service.get("entrypoint") or origin.get("entrypoint") or [])
        words = command if command else re.findall(r"\btelestack ([a-z][a-z-]+)", script)[:1]
        env = {**(origin.get("environment") or {}), **(service.get("environment") or {})}
        for key in [k for k in list(__import__("os").environ) if k.startswith(ENV_PREFIX)]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith(ENV_PREFIX) and key not in _notifier_secret_variables():
                monkeypatch.setenv(key, str(value))
        settings_cls = _settings_class(list(words))
        settings = load_settings(settings_cls, ROOT / "config" / "telestack.yaml")
        # The healthcheck probes the port the service really binds (a partial `http` once dropped it to 0).
        probe = " ".join(map(str, (service.get("healthcheck") or origin.get("healthcheck") or {}).get("test") or []))
        probed = re.search(r"127\.0\.0\.1:(\d+)/healthz", probe)
        if probed:
            # `telestack downsample` reads the writer's section for the storage layout only: it binds its own.
            fields = ["downsampler"] if words[:1] == ["downsample"] else list(settings_cls.model_fields)
            sections = [getattr(settings, field) for field in fields]
            bound = [section.http.port for section in sections if hasattr(section, "http")]
            assert bound == [int(probed.group(1))], (name, "binds", bound, "healthcheck probes", probed.group(1))
        for key, value in env.items():
            path_parts = key.removeprefix(ENV_PREFIX).lower().split(ENV_NESTED_DELIMITER)
            # shared values (x-telestack-env) reach services without that section: ignored by them
            if key.startswith(ENV_PREFIX) and path_parts[0] in settings_cls.model_fields:
                node: Any = settings
                for part in path_parts:
                    node = getattr(node, part)
                shown = node.get_secret_value() if hasattr(node, "get_secret_value") else node
                assert str(shown) == str(value) or isinstance(shown, list | dict | int | float), (name, key, shown)
        loaded += 1
    assert loaded >= (10 if path.name == "docker-compose.yml" else 1)

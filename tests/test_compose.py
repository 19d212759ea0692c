"""docker-compose.yml, checked without a Docker engine: schema, commands, variables, ports, healthchecks.

`tests/data/compose-spec.json` is the compose specification's schema, from the Go module
github.com/compose-spec/compose-go/v2 (v2.16.2, schema/compose-spec.json), the code `docker compose` itself uses.
"""

from __future__ import annotations

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


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_the_specification(path: Path) -> None:
    schema = json.loads((ROOT / "tests/data/compose-spec.json").read_text())
    jsonschema.validate(_load(path), schema)


def test_every_service_has_a_healthcheck_and_restart_policy() -> None:
    compose = _load(ROOT / "docker-compose.yml")
    anchors = compose.get("x-telestack", {})
    for name, service in compose["services"].items():
        merged = {**anchors, **service} if service.get("image", "").startswith("telestack") else service
        assert "healthcheck" in merged, f"service {name} has no healthcheck"
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
    compose = _load(ROOT / "docker-compose.yml")
    for name, service in compose["services"].items():
        command = service.get("command")
        if not str(service.get("image", "")).startswith("telestack") or not command:
            continue
        words = command if isinstance(command, list) else command.split()
        assert words[0] in COMMANDS, f"service {name} runs 'telestack {words[0]}', which does not exist"


def test_every_telestack_variable_maps_to_a_setting() -> None:
    classes = _settings_classes()
    names: set[str] = set()
    for path in [*COMPOSE_FILES, ROOT / ".env.example"]:
        names.update(re.findall(rf"\b{ENV_PREFIX}[A-Z0-9_]+", path.read_text()))
    names.discard("TELESTACK_VERSION")  # the image tag, not a setting
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

"""The device registry: loading the YAML, topic templates, and checking commands against their types."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from telestack.actuator.errors import InvalidCommand, NotFound, RegistryError
from telestack.actuator.registry import Registry, load_registry

REPO = Path(__file__).resolve().parents[2]


def registry(**overrides: object) -> Registry:
    raw: dict = {
        "types": {
            "plug": {"commands": {"on": {}, "off": {}}},
            "dimmer": {
                "commands": {
                    "set": {
                        "args": {
                            "level": {"type": "integer", "min": 0, "max": 100},
                            "fade_s": {"type": "number", "required": False, "default": 0.5, "min": 0, "max": 10},
                            "mode": {"type": "string", "required": False, "choices": ["soft", "hard"]},
                            "night": {"type": "boolean", "required": False},
                        }
                    }
                }
            },
        },
        "devices": [
            {"id": "plug-1", "type": "plug", "site": "lab"},
            {"id": "dim-1", "type": "dimmer", "site": "lab", "command_topic": "lab/{site}/{type}/{device}/set"},
        ],
    }
    raw.update(overrides)
    return Registry.model_validate(raw)


def test_the_shipped_registry_loads_with_the_seed_devices() -> None:
    shipped = load_registry(REPO / "config" / "devices.yaml")
    assert {"plug-1", "f1", "f2", "f3"} <= {d.id for d in shipped.devices}
    assert set(shipped.types["plug"].commands) == {"on", "off", "toggle"}
    assert shipped.seen_topics()["plugs/plug-1/report"] == "plug-1"  # the simulator's telemetry topics
    assert shipped.seen_topics()["fermenters/f2/+"] == "f2"
    assert shipped.check_command("f1", "set_setpoint", {"celsius": 12}) == {"celsius": 12.0}
    with pytest.raises(InvalidCommand, match="above the maximum 30"):
        shipped.check_command("f1", "set_setpoint", {"celsius": 31})


def test_topics_come_from_templates() -> None:
    reg = registry()
    assert reg.command_topic("plug-1") == "devices/plug-1/cmd"
    assert reg.ack_topic("plug-1") == "devices/plug-1/ack"
    assert reg.command_topic("dim-1") == "lab/lab/dimmer/dim-1/set"
    assert reg.ack_topics() == {"devices/plug-1/ack": "plug-1", "devices/dim-1/ack": "dim-1"}


def test_arguments_are_normalized_and_defaults_filled() -> None:
    reg = registry()
    assert reg.check_command("dim-1", "set", {"level": 40.0, "night": True}) == {
        "level": 40,
        "fade_s": 0.5,
        "night": True,
    }
    assert reg.check_command("plug-1", "on", {}) == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "argument 'level' is required"),
        ({"level": 101}, "level=101 is above the maximum 100"),
        ({"level": -1}, "level=-1 is below the minimum 0"),
        ({"level": 4.5}, "level must be an integer, not 4.5"),
        ({"level": "10"}, "level must be an integer, not '10'"),
        ({"level": True}, "level must be an integer, not true"),
        ({"level": 1, "fade_s": float("nan")}, "fade_s must be a finite number"),
        ({"level": 1, "mode": "wild"}, "mode='wild' is not one of: 'soft', 'hard'"),
        ({"level": 1, "night": "yes"}, "night must be true or false, not 'yes'"),
        ({"level": 1, "colour": "red"}, "unknown argument 'colour' (set takes: level, fade_s, mode, night)"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(args: dict, message: str) -> None:
    with pytest.raises(InvalidCommand) as info:
        registry().check_command("dim-1", "set", args)
    assert message in [p.msg for p in info.value.problems]
    assert info.value.status == 422


def test_unknown_commands_and_devices() -> None:
    reg = registry()
    with pytest.raises(InvalidCommand, match="unknown command 'blink'") as info:
        reg.check_command("plug-1", "blink", {})
    assert "plug-1 accepts: on, off" in info.value.problems[0].msg
    with pytest.raises(NotFound):
        reg.check_command("ghost", "on", {})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"devices": [{"id": "a", "type": "kettle", "site": "lab"}]}, "type 'kettle', which is not in types"),
        (
            {"devices": [{"id": "a", "type": "plug", "site": "lab"}, {"id": "a", "type": "plug", "site": "x"}]},
            "listed twice",
        ),
        ({"devices": [{"id": "a b", "type": "plug", "site": "lab"}]}, "devices.0.id"),
        ({"defaults": {"command_topic": "devices/cmd"}}, "must contain {device}"),
        ({"defaults": {"ack_topic": "devices/{device}/{room}"}}, "unknown placeholders ['room']"),
        ({"defaults": {"ack_topic": "devices/+/{device}"}}, "wildcards"),
        (
            {
                "devices": [
                    {"id": "a", "type": "plug", "site": "lab", "command_topic": "x/{site}"},
                    {"id": "b", "type": "plug", "site": "lab", "command_topic": "x/{site}"},
                ]
            },
            "must contain {device}",
        ),
        (
            {"types": {"t": {"commands": {"c": {"args": {"v": {"type": "number", "min": 5, "max": 1}}}}}}},
            "min 5.0 is above max 1.0",
        ),
        (
            {
                "types": {
                    "t": {
                        "commands": {
                            "c": {"args": {"v": {"type": "number", "required": False, "default": 9, "max": 5}}}
                        }
                    }
                }
            },
            "default of v=9 is above the maximum 5",
        ),
        ({"types": {"t": {"commands": {"c": {"args": {"v": {"type": "string", "min": 1}}}}}}}, "min/max apply"),
    ],
)
def test_invalid_registries_fail_at_load_naming_the_place(tmp_path: Path, change: dict, message: str) -> None:
    raw = {"types": {"plug": {"commands": {"on": {}}}}, "devices": []}
    raw.update(change)
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_unquoted_on_and_off_in_yaml_are_caught(tmp_path: Path) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text("types:\n  plug:\n    commands:\n      on: {}\n      off: {}\ndevices: []\n")
    with pytest.raises(RegistryError, match='quote command names such as "on"'):
        load_registry(path)


def test_a_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"actuator\.devices_file"):
        load_registry(tmp_path / "nope.yaml")

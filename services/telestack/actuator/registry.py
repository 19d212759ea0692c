"""The device registry: which devices exist, where their commands go, and which commands each type accepts.

A YAML file (``config/devices.yaml``)::

    defaults:
      command_topic: devices/{device}/cmd     # placeholders: {device}, {site}, {type}
      ack_topic: devices/{device}/ack
    types:
      plug:
        commands:
          "on": {description: close the relay}
          toggle: {}
      fermenter:
        commands:
          set_setpoint:
            timeout_s: 20
            args:
              celsius: {type: number, min: -2, max: 30, unit: °C}
    devices:
      - {id: plug-1, type: plug, site: lab}
      - {id: f1, type: fermenter, site: brewery, description: fermenter 1}

`Registry.check_command` checks a command against its type and returns the arguments to send (defaults filled in),
or raises `InvalidCommand` listing every problem:

>>> registry = Registry.model_validate({
...     "types": {"fermenter": {"commands": {"set_setpoint": {"args": {"celsius": {"type": "number", "min": -2,
...         "max": 30}}}}}},
...     "devices": [{"id": "f1", "type": "fermenter", "site": "brewery"}]})
>>> registry.check_command("f1", "set_setpoint", {"celsius": 12})
{'celsius': 12.0}
>>> try:
...     registry.check_command("f1", "set_setpoint", {"celsius": 45, "fan": 1})
... except InvalidCommand as exc:
...     [problem.msg for problem in exc.problems]
["unknown argument 'fan' (set_setpoint takes: celsius)", 'celsius=45 is above the maximum 30']
>>> registry.command_topic("f1")
'devices/f1/cmd'
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from telestack.actuator.errors import InvalidCommand, NotFound, Problem, RegistryError
from telestack.core.commands import DEFAULT_ACK_TOPIC, DEFAULT_COMMAND_TOPIC

__all__ = ["ArgSpec", "CommandSpec", "Device", "DeviceType", "Registry", "TopicDefaults", "load_registry"]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_PLACEHOLDERS = frozenset({"device", "site", "type"})
ArgValue = float | int | bool | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArgSpec(_Strict):
    """One argument of a command: its type, bounds and (when optional) default."""

    type: Literal["number", "integer", "boolean", "string"] = Field(description="JSON type of the value")
    description: str = ""
    required: bool = Field(True, description="whether the caller must give it (else `default` is sent, if any)")
    default: ArgValue | None = None
    min: float | None = Field(None, description="smallest allowed value (number, integer)")
    max: float | None = Field(None, description="largest allowed value (number, integer)")
    choices: list[ArgValue] | None = Field(None, description="the only values allowed")
    max_length: int | None = Field(None, ge=1, description="longest string allowed")
    unit: str | None = Field(None, description="unit shown to people (°C, %, s)")
    step: float | None = Field(None, gt=0, description="granularity the /ui input offers")

    @model_validator(mode="after")
    def _consistent(self) -> ArgSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.type not in ("number", "integer") and (self.min is not None or self.max is not None):
            raise ValueError(f"min/max apply to number and integer arguments, not {self.type}")
        if self.required and self.default is not None:
            raise ValueError("a required argument takes no default (set required: false)")
        return self

    def check(self, name: str, value: Any) -> tuple[ArgValue | None, str | None]:
        """(normalized value, None) or (None, what is wrong)."""
        kind = self.type
        normalized: ArgValue
        if kind == "boolean":
            if not isinstance(value, bool):
                return None, f"{name} must be true or false, not {_show(value)}"
            normalized = value
        elif kind == "string":
            if not isinstance(value, str):
                return None, f"{name} must be a string, not {_show(value)}"
            if self.max_length is not None and len(value) > self.max_length:
                return None, f"{name} is longer than {self.max_length} characters"
            normalized = value
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None, f"{name} must be {'an integer' if kind == 'integer' else 'a number'}, not {_show(value)}"
            if isinstance(value, float) and not math.isfinite(value):
                return None, f"{name} must be a finite number"
            if kind == "integer":
                if isinstance(value, float) and not value.is_integer():
                    return None, f"{name} must be an integer, not {value!r}"
                normalized = int(value)
            else:
                normalized = float(value)
            unit = f" {self.unit}" if self.unit else ""
            if self.min is not None and normalized < self.min:
                return None, f"{name}={_show(value)} is below the minimum {_num(self.min)}{unit}"
            if self.max is not None and normalized > self.max:
                return None, f"{name}={_show(value)} is above the maximum {_num(self.max)}{unit}"
        if self.choices is not None and normalized not in self.choices:
            allowed = ", ".join(_show(choice) for choice in self.choices)
            return None, f"{name}={_show(value)} is not one of: {allowed}"
        return normalized, None


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _num(value)
    return type(value).__name__


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


class CommandSpec(_Strict):
    """A command a device type accepts."""

    description: str = ""
    args: dict[str, ArgSpec] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, gt=0, le=3600, description="ack timeout (default: command_timeout_s)")

    @model_validator(mode="after")
    def _defaults_are_valid(self) -> CommandSpec:
        for name, spec in self.args.items():
            if spec.default is not None:
                _, problem = spec.check(name, spec.default)
                if problem:
                    raise ValueError(f"default of {problem}")
        return self


class DeviceType(_Strict):
    description: str = ""
    commands: dict[str, CommandSpec] = Field(default_factory=dict)
    display: list[str] = Field(
        default_factory=list, description="keys of the device state shown first on /ui (e.g. relay, setpoint)"
    )
    seen_topics: list[str] = Field(
        default_factory=list,
        description="MQTT filters (with {device}; + and # allowed) whose live messages count as the device "
        "being seen, e.g. its telemetry: plugs/{device}/report",
    )

    @field_validator("seen_topics")
    @classmethod
    def _seen_templates(cls, value: list[str]) -> list[str]:
        return _check_templates(value) or []

    @field_validator("commands")
    @classmethod
    def _command_names(cls, value: dict[str, CommandSpec]) -> dict[str, CommandSpec]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", name):
                raise ValueError(f"command name {name!r} must be a word (letters, digits, _ . -)")
        return value


def _check_template(template: str, *, wildcards: bool = False) -> str:
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = fields - _PLACEHOLDERS
    if unknown:
        raise ValueError(
            f"topic {template!r} uses unknown placeholders {sorted(unknown)} (allowed: device, site, type)"
        )
    if "device" not in fields:
        raise ValueError(f"topic {template!r} must contain {{device}} so each device has its own topic")
    if not wildcards and ("+" in template or "#" in template):
        raise ValueError(f"topic {template!r} must not contain MQTT wildcards (+ or #)")
    return template


def _check_templates(templates: list[str] | None) -> list[str] | None:
    return None if templates is None else [_check_template(t, wildcards=True) for t in templates]


class TopicDefaults(_Strict):
    command_topic: str = Field(DEFAULT_COMMAND_TOPIC, description="where commands are published")
    ack_topic: str = Field(DEFAULT_ACK_TOPIC, description="where devices publish their acks")

    @field_validator("command_topic", "ack_topic")
    @classmethod
    def _template(cls, value: str) -> str:
        return _check_template(value)


class Device(_Strict):
    id: str = Field(pattern=ID_PATTERN, description="device id, unique; the {device} of its topics")
    type: str = Field(description="a key of `types`")
    site: str = Field(pattern=ID_PATTERN, description="site the device belongs to (building, lab, brewery)")
    description: str = ""
    command_topic: str | None = Field(None, description="overrides defaults.command_topic")
    ack_topic: str | None = Field(None, description="overrides defaults.ack_topic")
    seen_topics: list[str] | None = Field(None, description="overrides the type's seen_topics")

    @field_validator("seen_topics")
    @classmethod
    def _seen_templates(cls, value: list[str] | None) -> list[str] | None:
        return _check_templates(value)

    @field_validator("command_topic", "ack_topic")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else _check_template(value)


class Registry(_Strict):
    """Devices and their types; build it with `load_registry` (or `model_validate` in tests)."""

    defaults: TopicDefaults = Field(default_factory=lambda: TopicDefaults())
    types: dict[str, DeviceType] = Field(default_factory=dict)
    devices: list[Device] = Field(default_factory=list)

    _by_id: dict[str, Device] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _index(self) -> Registry:
        for device in self.devices:
            if device.id in self._by_id:
                raise ValueError(f"device {device.id!r} is listed twice")
            if device.type not in self.types:
                known = ", ".join(sorted(self.types)) or "none defined"
                raise ValueError(f"device {device.id!r} has type {device.type!r}, which is not in types ({known})")
            self._by_id[device.id] = device
        topics: dict[str, str] = {}
        for device in self.devices:
            for topic in (self.command_topic(device.id), self.ack_topic(device.id)):
                owner = topics.setdefault(topic, device.id)
                if owner != device.id:
                    raise ValueError(f"devices {owner!r} and {device.id!r} share the MQTT topic {topic!r}")
        return self

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._by_id

    def device(self, device_id: str) -> Device:
        """The device, or `NotFound`."""
        try:
            return self._by_id[device_id]
        except KeyError:
            raise NotFound(f"unknown device {device_id!r}") from None

    def device_type(self, device_id: str) -> DeviceType:
        return self.types[self.device(device_id).type]

    def _topic(self, device: Device, template: str) -> str:
        return template.format(device=device.id, site=device.site, type=device.type)

    def command_topic(self, device_id: str) -> str:
        device = self.device(device_id)
        return self._topic(device, device.command_topic or self.defaults.command_topic)

    def ack_topic(self, device_id: str) -> str:
        device = self.device(device_id)
        return self._topic(device, device.ack_topic or self.defaults.ack_topic)

    def ack_topics(self) -> dict[str, str]:
        """Ack topic → device id, for every device."""
        return {self.ack_topic(device.id): device.id for device in self.devices}

    def seen_topics(self) -> dict[str, str]:
        """MQTT filter → device id, for every device whose type (or itself) names seen topics."""
        filters: dict[str, str] = {}
        for device in self.devices:
            templates = device.seen_topics if device.seen_topics is not None else self.types[device.type].seen_topics
            for template in templates:
                filters[self._topic(device, template)] = device.id
        return filters

    def command_spec(self, device_id: str, command: str) -> CommandSpec:
        device_type = self.device_type(device_id)
        spec = device_type.commands.get(command)
        if spec is None:
            allowed = ", ".join(device_type.commands) or "none"
            raise InvalidCommand(
                f"unknown command {command!r} for device {device_id!r} (type {self.device(device_id).type})",
                [Problem(("body", "command"), f"unknown command {command!r}; {device_id} accepts: {allowed}")],
            )
        return spec

    def check_command(self, device_id: str, command: str, args: Mapping[str, Any]) -> dict[str, ArgValue]:
        """The arguments to send for `command` on `device_id`; `InvalidCommand` lists every problem."""
        spec = self.command_spec(device_id, command)
        problems: list[Problem] = []
        normalized: dict[str, ArgValue] = {}
        for name in args:
            if name not in spec.args:
                allowed = ", ".join(spec.args) or "no arguments"
                problems.append(
                    Problem(("body", "args", name), f"unknown argument {name!r} ({command} takes: {allowed})")
                )
        for name, arg in spec.args.items():
            if name not in args:
                if arg.required:
                    problems.append(Problem(("body", "args", name), f"argument {name!r} is required"))
                elif arg.default is not None:
                    normalized[name] = arg.default
                continue
            value, problem = arg.check(name, args[name])
            if problem is not None:
                problems.append(Problem(("body", "args", name), problem))
            elif value is not None:
                normalized[name] = value
        if problems:
            summary = "; ".join(p.msg for p in problems)
            raise InvalidCommand(f"invalid {command!r} command for {device_id!r}: {summary}", problems)
        return normalized

    def timeout_s(self, device_id: str, command: str, default_s: float) -> float:
        spec = self.command_spec(device_id, command)
        return spec.timeout_s if spec.timeout_s is not None else default_s


def load_registry(path: Path) -> Registry:
    """Read and check the registry; `RegistryError` names the file, the place and the problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"device registry {path} does not exist (set actuator.devices_file)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RegistryError(f"cannot read device registry {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise RegistryError(f"device registry {path} must be a mapping with 'types' and 'devices'")
    for type_name, device_type in (raw.get("types") or {}).items():
        commands = device_type.get("commands") if isinstance(device_type, dict) else None
        for name in commands or {}:
            if isinstance(name, bool):
                # YAML 1.1 reads on/off/yes/no as booleans: the plug's "on" would silently become True.
                raise RegistryError(
                    f"invalid device registry {path}: type {type_name!r} has a command named {name!r}; "
                    'quote command names such as "on" and "off" in YAML'
                )
    try:
        return Registry.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(part) for part in err["loc"]) or "(top level)"
            if err["loc"][:1] == ("devices",) and len(err["loc"]) > 1 and isinstance(err["loc"][1], int):
                index = err["loc"][1]
                devices = raw.get("devices")
                if isinstance(devices, list) and index < len(devices) and isinstance(devices[index], dict):
                    where += f" (device {devices[index].get('id')!r})"
            lines.append(f"  - {where}: {err['msg']}")
        raise RegistryError(f"invalid device registry {path}:\n" + "\n".join(lines)) from None

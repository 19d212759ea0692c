"""Typed settings: a YAML file, then ``TELESTACK_*`` environment variables (and ``.env``), then CLI flags.

One file (``config/telestack.yaml`` by default) holds the shared sections (``kafka``, ``influx``, ``mqtt``,
``log``) and one section per service (``influx_writer``, ``mqtt_bridge``, ...). Every service has its own
settings class built on `TelestackSettings` and declares only the sections it uses. Nested values are
overridden from the environment with ``__`` between levels::

    TELESTACK_KAFKA__BOOTSTRAP_SERVERS=kafka:9092
    TELESTACK_INFLUX__TOKEN=...            # secrets come from the environment or .env, never from git

`load_settings` is called once in a service's ``main``; a missing or invalid value raises `ConfigError`
naming the setting (its YAML path and its environment variable).

Two rules hold for every section of every service: a partial value (one environment variable, or a YAML
section that sets one key) keeps the section's other defaults (`_merge_over_defaults`); and a top-level name
that no service knows (`SECTIONS`), in the file, the overrides or a ``TELESTACK_<SECTION>__...`` variable,
is an error rather than silently ignored (a typo such as ``kafak:`` would otherwise leave the defaults on).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from telestack.core.errors import ConfigError
from telestack.core.ports import SERVER_PORTS

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "SECTIONS",
    "HttpSettings",
    "InfluxSettings",
    "KafkaSettings",
    "LogSettings",
    "MqttSettings",
    "Section",
    "TelestackSettings",
    "TopicSettings",
    "env_name",
    "load_settings",
]

ENV_PREFIX = "TELESTACK_"
ENV_NESTED_DELIMITER = "__"
DEFAULT_CONFIG_PATH = Path("config/telestack.yaml")

# The top-level names of the shared settings file, every service's (one service's settings class declares only
# the ones it reads, and ignores the others'). A name outside these is a typo, refused at start.
SECTIONS = frozenset(
    {
        # shared
        "log",
        "kafka",
        "influx",
        "mqtt",
        # one per service or command
        "actuator",
        "alerting",
        "can_gateway",
        "downsampler",
        "influx_writer",
        "kafka_lag",
        "mqtt_bridge",
        "topic_layout",
        "vehicle_simulator",
        "device_logins",  # the MQTT simulators' flag
    }
)

# Values that people leave in place from examples; refused so a deployment never runs with them.
_PLACEHOLDER_SECRETS = frozenset(
    {"", "admin", "changeme", "change-me", "password", "secret", "token", "telestack", "example", "xxx"}
)

_config_path: ContextVar[Path | None] = ContextVar("telestack_config_path", default=None)


def env_name(*path: str) -> str:
    """The environment variable that overrides a setting: ``env_name("kafka", "bootstrap_servers")``."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(part.upper() for part in path)


def check_secret(value: SecretStr | None, name: str) -> SecretStr | None:
    """Refuse example or placeholder secrets; `name` is the setting's dotted path."""
    if value is not None and value.get_secret_value().strip().lower() in _PLACEHOLDER_SECRETS:
        raise ValueError(f"{name} is empty or a placeholder; set a real secret (see .env.example)")
    return value


def _merge_over_defaults(cls: type[BaseModel], data: Any) -> Any:
    """A partial value of a nested section keeps the section's defaults for what it does not set.

    The one merge rule for every section: ``TELESTACK_MQTT_BRIDGE__HTTP__HOST=0.0.0.0`` changes the host and
    keeps the bridge's default port, exactly as if the YAML said ``mqtt_bridge: {http: {host: 0.0.0.0}}``.
    Without it pydantic validates ``{host}`` against the section class alone, ignoring the field's own default
    (e.g. ``HttpSettings(port=9102)``), and the port silently falls back to the class default.
    """
    if not isinstance(data, dict):
        return data
    merged = dict(data)
    for name, field in cls.model_fields.items():
        key = name if name in merged else field.alias
        value = merged.get(key) if key is not None else None
        if not isinstance(value, dict) or field.is_required():
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            merged[key] = _deep_merge(default.model_dump(round_trip=True), value)
    return merged


def _unknown_sections(names: Iterable[str], known: Iterable[str]) -> str | None:
    """A message naming each of `names` outside `known` (with the nearest known name), or None."""
    known = sorted(known)
    problems = []
    for name in sorted(set(names) - set(known)):
        near = difflib.get_close_matches(name, known, n=1)
        problems.append(repr(name) + (f" (did you mean {near[0]!r}?)" if near else ""))
    if not problems:
        return None
    return f"unknown settings section {', '.join(problems)}; the sections are {', '.join(known)}"


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        below = merged.get(key)
        merged[key] = _deep_merge(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return merged


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, so a typo in YAML fails at start.

    A partial nested value is merged over the field's default section (`_merge_over_defaults`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _partial_values_keep_defaults(cls, data: Any) -> Any:
        return _merge_over_defaults(cls, data)


class TopicSettings(Section):
    telemetry: str = Field("telemetry", description="line protocol records, key = device id")
    dlq: str = Field("telemetry.dlq", description="rejected input, with the reason in headers")
    can_raw: str = Field("can.raw", description="raw CAN frames, for re-decoding and replay")
    alerts: str = Field("alerts", description="alert state changes (JSON)")
    commands: str = Field("commands", description="device commands and their acks (JSON)")
    alerts_state: str = Field("alerts.state", description="alerting's state per alert instance (compacted)")


class KafkaSettings(Section):
    bootstrap_servers: str = Field(f"127.0.0.1:{SERVER_PORTS['kafka']}", description="comma-separated host:port list")
    client_id: str = Field("telestack", description="client.id sent to the brokers")
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "lz4", description="producer compression codec"
    )
    linger_ms: int = Field(20, ge=0, description="producer batching delay, ms")
    message_timeout_ms: int = Field(
        300_000, ge=1_000, description="how long the producer retries a record before reporting it failed, ms"
    )
    topics: TopicSettings = Field(default_factory=lambda: TopicSettings())
    config: dict[str, str] = Field(
        default_factory=dict,
        description="extra librdkafka settings (security.protocol, sasl.*, ssl.*), applied last",
    )


class InfluxSettings(Section):
    url: str = Field(f"http://127.0.0.1:{SERVER_PORTS['influx']}", description="InfluxDB 2 base URL")
    org: str = Field("telestack", description="organization name")
    bucket: str = Field("telemetry", description="bucket raw telemetry is written to")
    token: SecretStr | None = Field(None, description="API token (set it from the environment)")
    timeout_ms: int = Field(10_000, ge=100, description="HTTP timeout, ms")

    @field_validator("token")
    @classmethod
    def _token_not_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        return check_secret(value, "influx.token")

    def require_token(self) -> str:
        if self.token is None:
            raise ConfigError(f"influx.token is not set; export {env_name('influx', 'token')} (see .env.example)")
        return self.token.get_secret_value()


class MqttSettings(Section):
    host: str = Field("127.0.0.1", description="MQTT broker host")
    port: int = Field(SERVER_PORTS["mqtt_devices"], ge=1, le=65535, description="MQTT broker port")
    username: str | None = Field(None, description="MQTT user (Mosquitto runs with auth on)")
    password: SecretStr | None = Field(None, description="MQTT password (set it from the environment)")
    client_id: str = Field("telestack", description="MQTT client id; fixed so the session survives restarts")
    tls: bool = Field(False, description="connect with TLS")
    ca_file: Path | None = Field(None, description="CA certificate for TLS")
    keepalive_s: int = Field(30, ge=5, description="MQTT keepalive, s")

    @field_validator("password")
    @classmethod
    def _password_not_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        return check_secret(value, "mqtt.password")


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="json for machines, console for people; auto picks console on a terminal"
    )


class HttpSettings(Section):
    """Where a service serves /healthz and /metrics."""

    host: str = Field("127.0.0.1", description="bind address of /healthz and /metrics (0.0.0.0 in containers)")
    port: int = Field(0, ge=0, le=65535, description="port of /healthz and /metrics; 0 picks a free one")


class TelestackSettings(BaseSettings):
    """Common base of every service's settings."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",  # the shared YAML holds other services' sections too
        frozen=True,
    )

    log: LogSettings = Field(default_factory=lambda: LogSettings())
    kafka: KafkaSettings = Field(default_factory=lambda: KafkaSettings())

    @model_validator(mode="before")
    @classmethod
    def _partial_values_keep_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):  # the YAML file's sections and the overrides (the environment: `_EnvSections`)
            problem = _unknown_sections(data, SECTIONS | set(cls.model_fields))
            if problem is not None:
                raise ValueError(problem)
        return _merge_over_defaults(cls, data)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            _EnvSections(settings_cls, env_settings, dotenv_settings),
            init_settings,
            env_settings,
            dotenv_settings,
        ]
        path = _config_path.get()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


class _EnvSections(PydanticBaseSettingsSource):
    """Refuses a ``TELESTACK_<SECTION>__...`` variable (environment or ``.env``) of a section no service knows.

    It gives no value: the environment's own sources read only the names of `settings_cls`' fields, and would
    silently skip ``TELESTACK_KAFAK__BOOTSTRAP_SERVERS``. Names without ``__`` (``TELESTACK_CONFIG``,
    ``TELESTACK_CACHE``, ...) are not settings sections and are left alone.
    """

    def __init__(self, settings_cls: type[BaseSettings], *sources: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.sources = sources

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        prefix = ENV_PREFIX.lower()
        sections: dict[str, str] = {}
        for source in self.sources:
            for name in getattr(source, "env_vars", {}):
                rest = name.lower().removeprefix(prefix)
                if name.lower().startswith(prefix) and ENV_NESTED_DELIMITER in rest:
                    sections.setdefault(rest.split(ENV_NESTED_DELIMITER, 1)[0], name)
        problem = _unknown_sections(sections, SECTIONS | set(self.settings_cls.model_fields))
        if problem is not None:
            names = ", ".join(
                sorted(sections[s].upper() for s in set(sections) - SECTIONS - set(self.settings_cls.model_fields))
            )
            raise ConfigError(f"{problem} (environment variable {names})")
        return {}


S = TypeVar("S", bound=TelestackSettings)


def _describe_location(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "top level"
    path = [str(part) for part in loc]
    dotted = ".".join(path)
    if all(isinstance(part, str) for part in loc):
        return f"{dotted} (env {env_name(*path)})"
    return dotted


def load_settings(
    cls: type[S],
    config: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> S:
    """Build settings of `cls` from `config` (YAML), the environment and `overrides` (highest precedence).

    `config` defaults to ``$TELESTACK_CONFIG`` or ``config/telestack.yaml`` when that file exists.
    Raises `ConfigError` naming each invalid setting.
    """
    path: Path | None
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist (pass --config PATH or set TELESTACK_CONFIG)")
    elif os.environ.get("TELESTACK_CONFIG"):
        path = Path(os.environ["TELESTACK_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"TELESTACK_CONFIG points at {path}, which does not exist")
    else:
        path = DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None
    token = _config_path.set(path)
    try:
        return cls(**dict(overrides or {}))
    except ValidationError as exc:
        problems = "\n".join(
            f"  - {_describe_location(err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        source = f" (config file {path})" if path else ""
        raise ConfigError(f"invalid settings{source}:\n{problems}") from None
    finally:
        _config_path.reset(token)

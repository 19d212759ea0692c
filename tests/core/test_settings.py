"""Settings: YAML, then environment, then flags; bad values fail at start naming the setting."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import Field

from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.errors import ConfigError
from telestack.core.settings import InfluxSettings, Section, TelestackSettings, env_name, load_settings


class DemoOptions(Section):
    batch_lines: int = Field(5000, ge=1, description="lines per write")
    group: str = Field("demo", description="consumer group")


class DemoSettings(TelestackSettings):
    influx: InfluxSettings = Field(default_factory=lambda: InfluxSettings())
    demo: DemoOptions = Field(default_factory=lambda: DemoOptions())


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no config/telestack.yaml, no .env
    for name in list(__import__("os").environ):
        if name.startswith("TELESTACK_"):
            monkeypatch.delenv(name)


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "telestack.yaml"
    path.write_text(text)
    return path


def test_defaults_without_any_file() -> None:
    settings = load_settings(DemoSettings)
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.kafka.topics.telemetry == "telemetry"
    assert settings.demo.batch_lines == 5000


def test_yaml_then_env_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _yaml(tmp_path, "kafka:\n  bootstrap_servers: yaml:9092\n  client_id: from-yaml\ndemo:\n  batch_lines: 10\n")
    assert load_settings(DemoSettings, path).kafka.bootstrap_servers == "yaml:9092"
    monkeypatch.setenv("TELESTACK_KAFKA__BOOTSTRAP_SERVERS", "env:9092")
    settings = load_settings(DemoSettings, path)
    assert settings.kafka.bootstrap_servers == "env:9092"
    assert settings.kafka.client_id == "from-yaml"  # the rest of the section still comes from YAML
    settings = load_settings(DemoSettings, path, {"demo": {"group": "flag"}})
    assert (settings.demo.group, settings.demo.batch_lines) == ("flag", 10)


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TELESTACK_INFLUX__TOKEN=a-real-looking-token-123\n")
    assert load_settings(DemoSettings).influx.require_token() == "a-real-looking-token-123"


def test_invalid_value_names_setting_and_env(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "demo:\n  batch_lines: 0\n")
    with pytest.raises(ConfigError) as info:
        load_settings(DemoSettings, path)
    assert "demo.batch_lines" in str(info.value)
    assert "TELESTACK_DEMO__BATCH_LINES" in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_key_in_a_section_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"demo\.batch_line"):
        load_settings(DemoSettings, _yaml(tmp_path, "demo:\n  batch_line: 3\n"))


@pytest.mark.parametrize("secret", ["changeme", "admin", "  ", "password"])
def test_placeholder_secrets_are_refused(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv(env_name("influx", "token"), secret)
    with pytest.raises(ConfigError, match=r"influx\.token"):
        load_settings(DemoSettings)


def test_missing_token_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="TELESTACK_INFLUX__TOKEN"):
        load_settings(DemoSettings).influx.require_token()


def test_missing_config_file_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="--config"):
        load_settings(DemoSettings, "nope.yaml")


def test_flags_cover_every_setting_and_override_yaml(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, DemoSettings)
    help_text = parser.format_help()
    for flag in (
        "--kafka.bootstrap-servers",
        "--kafka.topics.telemetry",
        "--demo.batch-lines",
        "--influx.url",
    ):
        assert flag in help_text
    assert "TELESTACK_DEMO__BATCH_LINES" in help_text
    assert "--influx.token" not in help_text  # secrets only from the environment
    assert "TELESTACK_INFLUX__TOKEN" in help_text
    path = _yaml(tmp_path, "demo:\n  group: yaml\n")
    args = parser.parse_args(["--config", str(path), "--demo.batch-lines", "7", "--kafka.config", '{"a": "b"}'])
    settings = settings_from_args(DemoSettings, args)
    assert (settings.demo.batch_lines, settings.demo.group, settings.kafka.config) == (7, "yaml", {"a": "b"})


def test_bad_json_flag_is_a_config_error() -> None:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, DemoSettings)
    with pytest.raises(ConfigError, match="expects JSON"):
        settings_from_args(DemoSettings, parser.parse_args(["--kafka.config", "{oops"]))

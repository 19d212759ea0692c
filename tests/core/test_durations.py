"""One duration grammar (core.durations) for every setting and rule; the spellings users already wrote still load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from telestack.alerting.notifiers.config import WebhookConfig
from telestack.alerting.rules import parse_rules
from telestack.core.durations import duration_seconds, duration_text, parse_duration
from telestack.core.errors import ConfigError
from telestack.core.settings import load_settings
from telestack.influx_writer.settings import InfluxToolSettings, StorageOptions
from telestack.kafka_admin.topics import TopicSpec, TopicsSettings


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h30m", 5400), ("2d", 172800), ("500ms", 0.5), ("45", 45), (12, 12), ("1w", 604800)],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["15 minutes", "m", "", "1x", "-5s", "1h 30", "7 days", True, -1])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "flux"),
    [("30d", "30d"), ("1h30m", "1h30m"), ("90m", "90m"), ("0s", "0s"), ("90", "1m30s"), ("1.5h", "1h30m")],
)
def test_text_handed_to_influxdb_keeps_flux_spellings_and_writes_the_others_in_whole_units(
    text: str, flux: str
) -> None:
    assert duration_text(text) == flux


def test_forever_and_fractions_in_text_durations() -> None:
    assert duration_text("inf", forever_ok=True) == "inf" and duration_seconds("0") == 0
    with pytest.raises(ValueError, match="positive"):
        duration_text("inf")
    with pytest.raises(ValueError, match="whole number of seconds"):
        duration_text("500ms")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in [k for k in os.environ if k.startswith("TELESTACK_")]:
        monkeypatch.delenv(key)
    return monkeypatch


def test_writer_storage_spellings_from_env_and_yaml_still_load(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What users' .env files and settings YAML say today (the former writer grammar) loads unchanged."""
    clean_env.setenv("TELESTACK_INFLUX_WRITER__STORAGE__RAW_RETENTION", "30d")
    clean_env.setenv("TELESTACK_INFLUX_WRITER__STORAGE__DOWNSAMPLED_RETENTION", "inf")
    clean_env.setenv("TELESTACK_INFLUX_WRITER__STORAGE__DOWNSAMPLE_OFFSET", "0s")
    storage = load_settings(InfluxToolSettings).influx_writer.storage
    assert (storage.raw_retention, storage.downsampled_retention, storage.downsample_offset) == ("30d", "inf", "0s")
    clean_env.delenv("TELESTACK_INFLUX_WRITER__STORAGE__RAW_RETENTION")  # the environment wins over the file
    config = tmp_path / "telestack.yaml"
    config.write_text(
        "influx_writer:\n  storage: {raw_retention: '1w2d', downsample_window: 5m, downsample_every: 1h30m}\n"
    )
    storage = load_settings(InfluxToolSettings, config).influx_writer.storage
    assert (storage.raw_retention, storage.downsample_window, storage.downsample_every) == ("1w2d", "5m", "1h30m")
    assert StorageOptions(downsampled_retention="0").downsampled_retention == "0"
    with pytest.raises(ConfigError, match="raw_retention"):
        clean_env.setenv("TELESTACK_INFLUX_WRITER__STORAGE__RAW_RETENTION", "30 jours")
        load_settings(InfluxToolSettings)


def test_topic_retention_spellings_still_load(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TELESTACK_TOPIC_LAYOUT__TELEMETRY__RETENTION", "2d")
    clean_env.setenv("TELESTACK_TOPIC_LAYOUT__ALERTS_STATE__RETENTION", "inf")
    layout = load_settings(TopicsSettings).topic_layout
    assert (layout.telemetry.retention, layout.alerts_state.retention) == ("2d", "inf")
    assert TopicSpec(partitions=1, retention="0").retention == "0"


def test_alert_rule_and_notifier_durations_use_the_same_grammar() -> None:
    ruleset = parse_rules(
        """\
rules:
  - name: quiet
    select: {measurement: fermenter, field: temperature}
    condition: {type: nodata, after: 15m}
    repeat_interval: 1h30m
  - name: hot
    select: {measurement: fermenter, field: temperature}
    condition: {type: threshold, above: 30}
    for: 90
"""
    )
    quiet, hot = ruleset.rules
    assert (quiet.condition.after, quiet.repeat_interval, hot.for_) == (900.0, 5400.0, 90.0)
    hook = WebhookConfig(type="webhook", url="http://x", retry_backoff="500ms", max_backoff="1m")
    assert (hook.retry_backoff, hook.max_backoff) == (0.5, 60.0)

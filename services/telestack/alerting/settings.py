"""Settings of ``telestack alerting`` (section ``alerting:`` of the settings file) and its CLI tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from telestack.core.ports import SERVICE_PORTS
from telestack.core.settings import HttpSettings, InfluxSettings, MqttSettings, Section, TelestackSettings
from telestack.core.topics import moved_state_topic

__all__ = ["AlertingOptions", "AlertingSettings"]


class AlertingOptions(Section):
    rules: Path = Field(Path("config/alerts.yaml"), description="alert rules file (YAML)")
    devices_file: Path = Field(
        Path("config/devices.yaml"),
        description="the device registry (the actuator's): no-data rules with `expect: registry` expect its devices",
    )
    reload_interval_s: float = Field(
        2.0, ge=0, description="how often the rules file (and device registry) are checked for edits, s; 0 = never"
    )
    group_id: str = Field("telestack-alerting", description="Kafka consumer group on the telemetry topic")
    instance_id: str | None = Field(
        None,
        description="static group membership (group.instance.id): a restarted replica gets its partitions back "
        "at once instead of after the session timeout; unique per replica",
    )
    tick_interval_s: float = Field(1.0, gt=0, le=60, description="how often time-driven rules run (for, no data), s")
    poll_timeout_ms: int = Field(100, ge=1, le=5000, description="longest wait for telemetry in one pass, ms")
    max_batch: int = Field(2000, ge=1, description="telemetry records read per pass")
    checkpoint_interval_s: float = Field(
        60.0, gt=0, description="how often last values and last-seen times are saved to the state topic, s"
    )
    retry_after_s: float = Field(60.0, gt=0, description="wait before retrying a notification that failed, s")
    influx_annotations: bool = Field(True, description="write every state change to InfluxDB (measurement alerts)")
    influx_bucket: str | None = Field(None, description="bucket of the alerts measurement (default: influx.bucket)")
    http: HttpSettings = Field(
        default_factory=lambda: HttpSettings(port=SERVICE_PORTS["alerting"]), description="/healthz and /metrics"
    )


class AlertingSettings(TelestackSettings):
    influx: InfluxSettings = Field(default_factory=lambda: InfluxSettings())
    mqtt: MqttSettings = Field(default_factory=lambda: MqttSettings())
    alerting: AlertingOptions = Field(default_factory=lambda: AlertingOptions())

    @model_validator(mode="before")
    @classmethod
    def _former_state_topic_setting(cls, data: Any) -> Any:
        return moved_state_topic(data, "alerting", "state_topic")  # now kafka.topics.alerts_state

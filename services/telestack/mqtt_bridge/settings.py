"""Settings of ``telestack mqtt-bridge``: the shared ``kafka``, ``mqtt`` and ``log`` sections and ``mqtt_bridge``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from telestack.core.commands import DEFAULT_ACK_TOPIC
from telestack.core.ports import SERVICE_PORTS
from telestack.core.settings import HttpSettings, MqttSettings, Section, TelestackSettings

__all__ = ["BridgeOptions", "BridgeSettings"]


class BridgeOptions(Section):
    rules_file: Path = Field(
        Path("config/mqtt-bridge.yaml"), description="YAML file of mapping rules (topic filter → measurement)"
    )
    client_id: str = Field(
        "telestack-mqtt-bridge",
        description="MQTT client id; keep it fixed so the session (and queued messages) survive restarts; "
        "give each replica its own",
    )
    subscriptions: list[str] | None = Field(
        None,
        description="MQTT filters to subscribe to; default: those of the rules. A wider one (e.g. sensors/#) "
        "sends what no rule maps to the dead-letter topic as unmapped, so it shows",
    )
    share_group: str | None = Field(
        None, description="subscribe as $share/<group>/... so replicas with the same group split the messages"
    )
    ack_topic: str | None = Field(
        DEFAULT_ACK_TOPIC,
        description="topic pattern of device command acks, forwarded to Kafka commands; null to disable",
    )
    inflight_window: int = Field(
        2000,
        ge=1,
        le=65535,
        description="MQTT messages received but not yet confirmed by Kafka (MQTT 5 receive maximum)",
    )
    max_payload_bytes: int = Field(
        256 * 1024, ge=1, description="larger payloads go to the dead-letter topic as oversize, bytes"
    )
    reconnect_bound_s: float = Field(
        60, gt=0, description="/healthz fails when the broker connection has been down longer than this, s"
    )
    kafka_stall_s: float = Field(
        120, gt=0, description="/healthz fails when Kafka has confirmed nothing for this long while records wait, s"
    )
    drain_timeout_s: float = Field(
        10, ge=0, description="at shutdown, how long to wait for Kafka to confirm records in flight, s"
    )
    http: HttpSettings = Field(
        default_factory=lambda: HttpSettings(port=SERVICE_PORTS["mqtt-bridge"]), description="/healthz and /metrics"
    )

    @field_validator("share_group")
    @classmethod
    def _plain_group(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in "/+#")):
            raise ValueError("share_group must be a non-empty name without '/', '+' or '#'")
        return value


class BridgeSettings(TelestackSettings):
    mqtt: MqttSettings = Field(default_factory=lambda: MqttSettings())
    mqtt_bridge: BridgeOptions = Field(default_factory=lambda: BridgeOptions())

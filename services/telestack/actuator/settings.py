"""Settings of the actuator: the shared ``kafka`` and ``mqtt`` sections and its own ``actuator`` section.

::

    actuator:
      http: {host: 0.0.0.0, port: 8080}
      devices_file: config/devices.yaml
      tokens_file: var/actuator/tokens.json
      command_timeout_s: 10
      cors_origins: ["https://grafana.example.org"]
      proxy_headers: true            # behind a reverse proxy that sets X-Forwarded-For/-Proto
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from telestack.core.ports import SERVICE_PORTS
from telestack.core.settings import HttpSettings, MqttSettings, Section, TelestackSettings

__all__ = ["AckSource", "ActuatorOptions", "ActuatorSettings"]

AckSource = Literal["mqtt", "kafka", "both"]


class ActuatorOptions(Section):
    http: HttpSettings = Field(
        default_factory=lambda: HttpSettings(port=SERVICE_PORTS["actuator"]),
        description="where the API, /ui, /healthz and /metrics are served",
    )
    devices_file: Path = Field(Path("config/devices.yaml"), description="the device registry (YAML)")
    tokens_file: Path = Field(
        Path("var/actuator/tokens.json"),
        description="the token store (hashes only; written by 'telestack tokens', re-read when it changes)",
    )
    mqtt_client_id: str = Field("telestack-actuator", description="MQTT client id of the actuator (unique per replica)")
    ack_source: AckSource = Field(
        "both",
        description="where device acks are read: mqtt (ack topics directly), kafka (forwarded by mqtt-bridge "
        "to the commands topic) or both (the first one wins)",
    )
    command_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="default time a device has to ack a command before it is timed_out, s"
    )
    publish_timeout_s: float = Field(5.0, gt=0, le=60, description="time the MQTT broker has to confirm (PUBACK), s")
    kafka_timeout_s: float = Field(
        10.0, ge=1, le=300, description="time Kafka has to confirm an audit or ingest record before a 503, s"
    )
    max_wait_s: float = Field(30.0, ge=0, le=600, description="largest ?wait= a client may ask for, s")
    history_s: int = Field(
        86_400,
        ge=60,
        description="how long commands and idempotency keys are remembered (also replayed from Kafka at start), s",
    )
    replay_timeout_s: float = Field(
        30.0, ge=0, description="how long start-up waits to replay the commands topic before serving, s"
    )
    rate_limit_per_s: float = Field(
        5.0, ge=0, description="sustained requests per second allowed to one token (0: no limit)"
    )
    rate_limit_burst: int = Field(30, ge=1, description="requests one token may send at once before being limited")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="origins allowed to call the API from a browser (e.g. a Grafana on another host)",
    )
    ingest_max_body_bytes: int = Field(
        1_048_576, ge=1_024, description="largest ingest body as sent (compressed or not) before 413, bytes"
    )
    ingest_max_decompressed_bytes: int = Field(
        16_777_216, ge=1_024, description="largest ingest body after gzip decompression before 413, bytes"
    )
    ingest_max_lines: int = Field(100_000, ge=1, description="most lines or points in one ingest request")
    ingest_max_fields: int = Field(256, ge=1, description="most fields in one ingested point (more: 413)")
    ingest_record_max_bytes: int = Field(
        512_000,
        ge=1_024,
        le=900_000,
        description="largest telemetry record produced (lines are grouped per key up to this size), bytes",
    )
    site_tag: str = Field("site", min_length=1, description="tag forced to the token's site on ingested points")
    key_tag: str = Field(
        "device", min_length=1, description="tag whose value keys ingested telemetry records (else the site)"
    )
    identity_tags: list[str] = Field(
        ["device", "vehicle"],
        min_length=1,
        description="tags naming a device or vehicle: an ingest token writes only the values its --devices allow",
    )
    body_max_bytes: int = Field(65_536, ge=1_024, description="largest body of any other request, bytes")
    docs: bool = Field(True, description="serve /docs, /redoc and /openapi.json")
    proxy_headers: bool = Field(
        False, description="trust X-Forwarded-For/-Proto from forwarded_allow_ips (behind a reverse proxy)"
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1", description="comma-separated proxy addresses whose forwarded headers are trusted ('*': any)"
    )
    root_path: str = Field("", description="URL prefix when served under a sub-path by a reverse proxy")
    tls_certfile: Path | None = Field(None, description="TLS certificate (PEM); serve HTTPS when set")
    tls_keyfile: Path | None = Field(None, description="TLS private key (PEM) for tls_certfile")
    ui_wait_s: float = Field(5.0, ge=0, le=60, description="how long a /ui button waits for the device's ack, s")
    ui_cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto", description="Secure flag of the /ui session cookie; auto: when the request came over HTTPS"
    )

    @field_validator("root_path")
    @classmethod
    def _root_path_shape(cls, value: str) -> str:
        if value and (not value.startswith("/") or value.endswith("/")):
            raise ValueError("must start with '/' and not end with '/' (e.g. /telestack), or be empty")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> ActuatorOptions:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("actuator.tls_certfile and actuator.tls_keyfile must be set together")
        return self


class ActuatorSettings(TelestackSettings):
    mqtt: MqttSettings = Field(default_factory=lambda: MqttSettings())
    actuator: ActuatorOptions = Field(default_factory=lambda: ActuatorOptions())

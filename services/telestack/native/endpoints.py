"""Where the infrastructure servers are and how to log in: the one interface tests, benchmarks and demos use.

The same `Endpoints` comes from native servers (`telestack.native.stack`) or from testcontainers.
It is saved as JSON (``endpoints.json`` in the stack's run directory, readable by root only) and turned
into ``TELESTACK_*`` variables for services started as processes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from telestack.core.files import write_atomically
from telestack.core.settings import env_name

__all__ = ["Endpoints", "InfluxEndpoint", "KafkaEndpoint", "MqttEndpoint"]


@dataclass(frozen=True, slots=True)
class KafkaEndpoint:
    bootstrap_servers: str
    version: str = "unknown"


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """The broker: services log in on `port` with `username`; devices on `device_port`, where the client id is
    the login (a device cannot take another's session). `device_secret` derives the simulated devices' passwords
    (`telestack.core.mqtt.device_password`)."""

    host: str
    port: int
    username: str
    password: str
    version: str = "unknown"
    device_port: int = 0  # 0: the broker has no devices' listener (an endpoints.json from before it existed)
    device_secret: str = ""


@dataclass(frozen=True, slots=True)
class InfluxEndpoint:
    url: str
    org: str
    bucket: str
    token: str  # the operator (all-access) token made at setup
    username: str
    password: str
    version: str = "unknown"


@dataclass(frozen=True, slots=True)
class Endpoints:
    kafka: KafkaEndpoint
    mqtt: MqttEndpoint
    influx: InfluxEndpoint

    def env(self) -> dict[str, str]:
        """``TELESTACK_*`` variables that point a service at these servers."""
        return {
            env_name("kafka", "bootstrap_servers"): self.kafka.bootstrap_servers,
            env_name("mqtt", "host"): self.mqtt.host,
            env_name("mqtt", "port"): str(self.mqtt.port),
            env_name("mqtt", "username"): self.mqtt.username,
            env_name("mqtt", "password"): self.mqtt.password,
            env_name("influx", "url"): self.influx.url,
            env_name("influx", "org"): self.influx.org,
            env_name("influx", "bucket"): self.influx.bucket,
            env_name("influx", "token"): self.influx.token,
        }

    def versions(self) -> str:
        return f"Kafka {self.kafka.version}, {self.mqtt.version}, InfluxDB {self.influx.version}"

    def save(self, path: Path) -> None:
        write_atomically(path, json.dumps(asdict(self), indent=2) + "\n", mode=0o600)  # passwords, operator token

    @classmethod
    def load(cls, path: Path) -> Endpoints:
        data = json.loads(path.read_text())
        return cls(
            kafka=KafkaEndpoint(**data["kafka"]),
            mqtt=MqttEndpoint(**data["mqtt"]),
            influx=InfluxEndpoint(**data["influx"]),
        )

"""The port registry: no two ports alike, and every settings default reads it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from telestack.core.ports import SERVER_PORTS, SERVICE_PORTS
from telestack.core.settings import HttpSettings, InfluxSettings, KafkaSettings, MqttSettings
from tests.test_compose import _settings_classes


def test_no_two_ports_collide() -> None:
    ports = [*SERVICE_PORTS.values(), *SERVER_PORTS.values()]
    assert len(set(ports)) == len(ports), ports
    assert all(1024 <= port <= 65535 for port in ports)


def _http_defaults() -> dict[str, set[int]]:
    """Each settings section that has an ``http`` section (a service's), by service name: its default ports."""
    found: dict[str, set[int]] = {}
    for cls in _settings_classes():
        for name, field in cls.model_fields.items():
            section: Any = field.get_default(call_default_factory=True)
            if isinstance(section, BaseModel) and isinstance(getattr(section, "http", None), HttpSettings):
                found.setdefault(name.replace("_", "-"), set()).add(section.http.port)
    return found


def test_every_service_default_port_is_the_registry() -> None:
    assert _http_defaults() == {service: {port} for service, port in SERVICE_PORTS.items()}


def test_server_defaults_are_the_registry() -> None:
    assert KafkaSettings().bootstrap_servers == f"127.0.0.1:{SERVER_PORTS['kafka']}"
    assert InfluxSettings().url == f"http://127.0.0.1:{SERVER_PORTS['influx']}"
    assert MqttSettings().port == SERVER_PORTS["mqtt_devices"] == 1883

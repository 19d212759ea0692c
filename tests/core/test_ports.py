"""The port registry: no two ports alike; the settings defaults, compose, Telegraf and the README all agree with it."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from telestack.core.ports import SERVER_PORTS, SERVICE_PORTS
from telestack.core.settings import HttpSettings, InfluxSettings, KafkaSettings, MqttSettings
from tests.test_compose import ROOT, _load, _settings_classes


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


def _compose_services() -> dict[str, Any]:
    return dict(_load(ROOT / "docker-compose.yml")["services"])


def test_compose_healthchecks_probe_the_registry_port() -> None:
    """Each service's healthcheck asks the port the service listens on; a port changed in the registry alone
    would leave every container unhealthy."""
    services = _compose_services()
    for name, port in SERVICE_PORTS.items():
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert re.findall(r"127\.0\.0\.1:(\d+)/healthz", probe) == [str(port)], (name, probe)


def test_published_ports_are_the_registry() -> None:
    published = {
        name: [entry.rpartition(":")[2] for entry in service.get("ports", [])]
        for name, service in _compose_services().items()
        if name in SERVICE_PORTS
    }
    assert published == {name: ([str(SERVICE_PORTS[name])] if name == "actuator" else []) for name in SERVICE_PORTS}


def test_telegraf_scrapes_every_service_on_its_registry_port() -> None:
    scraped = set(re.findall(r'"http://([a-z-]+):(\d+)/metrics"', (ROOT / "telegraf" / "telegraf.conf").read_text()))
    assert scraped == {(name, str(port)) for name, port in SERVICE_PORTS.items()}


def test_readme_table_gives_the_registry_ports() -> None:
    table = dict(re.findall(r"^\| `([a-z-]+)` \|.*\| (\d+) \|$", (ROOT / "README.md").read_text(), re.MULTILINE))
    assert table == {name: str(port) for name, port in SERVICE_PORTS.items()}

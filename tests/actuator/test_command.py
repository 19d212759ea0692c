"""``telestack actuator`` as a process: settings from YAML and environment, serving, SIGTERM, start-up errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from telestack.actuator.tokens import TokenStore
from telestack.core.kafka import ensure_topics
from telestack.core.settings import KafkaSettings
from telestack.native import Endpoints
from telestack.native.servers import free_port
from tests.actuator.conftest import Devices, registry_yaml
from tests.polling import wait_until

pytestmark = pytest.mark.integration  # every test starts the actuator service in a process of its own


def _config(tmp_path: Path, port: int, unique: str, **actuator: object) -> Path:
    devices = Devices(*(f"{name}-{unique}" for name in ("plug", "lamp", "f1", "plug-mute", "plug-broken")))
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump(registry_yaml(devices)))
    config = {
        "log": {"format": "json"},
        "kafka": {"topics": {"commands": f"test-commands-{unique}", "telemetry": f"test-telemetry-{unique}"}},
        "actuator": {
            "http": {"host": "127.0.0.1", "port": port},
            "devices_file": str(tmp_path / "devices.yaml"),
            "tokens_file": str(tmp_path / "tokens.json"),
            "mqtt_client_id": f"actuator-{unique}",
            **actuator,
        },
    }
    path = tmp_path / "telestack.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_service_serves_and_drains_on_sigterm(endpoints: Endpoints, tmp_path: Path, unique: str) -> None:
    port = free_port()
    config = _config(tmp_path, port, unique, docs=False, proxy_headers=True)
    token, _ = TokenStore(tmp_path / "tokens.json").create("ops", ["read"])
    ensure_topics(
        KafkaSettings(bootstrap_servers=endpoints.kafka.bootstrap_servers),
        {f"test-commands-{unique}": 3, f"test-telemetry-{unique}": 3},
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "telestack", "actuator", "--config", str(config)],
        env={**os.environ, **endpoints.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return process.poll() is None and False

        wait_until(healthy, 60, what="the actuator answering /healthz")
        devices = httpx.get(f"{base}/v1/devices", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert devices.status_code == 200 and len(devices.json()["devices"]) == 5
        assert httpx.get(f"{base}/docs", timeout=5).status_code == 404  # docs: false in the YAML
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = process.stderr.read() if process.stderr else ""
    assert '"event": "actuator ready"' in log


def test_an_invalid_registry_stops_the_start_with_a_clear_message(tmp_path: Path, unique: str) -> None:
    config = _config(tmp_path, free_port(), unique)
    (tmp_path / "devices.yaml").write_text("types: {}\ndevices:\n  - {id: p1, type: plug, site: lab}\n")
    result = subprocess.run(
        [sys.executable, "-m", "telestack", "actuator", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "invalid device registry" in result.stderr and "'plug', which is not in types" in result.stderr


def test_settings_are_checked_at_start(tmp_path: Path, unique: str) -> None:
    for bad, message in (
        ({"root_path": "/telestack/"}, "actuator.root_path"),
        ({"tls_certfile": "/etc/cert.pem"}, "tls_certfile and actuator.tls_keyfile must be set together"),
    ):
        config = _config(tmp_path, free_port(), unique, **bad)
        result = subprocess.run(
            [sys.executable, "-m", "telestack", "actuator", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert message in result.stderr

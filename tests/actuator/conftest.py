"""Fixtures of the actuator tests: a running actuator (real uvicorn, Kafka, Mosquitto), tokens, fake devices.

`FakeDevice` is a device over real MQTT that follows `telestack.core.commands`: it executes each command it
receives and publishes a `DeviceAck` (or refuses, or stays silent, as asked).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt_client
import pytest
import yaml

from telestack.actuator.command import ActuatorProcess
from telestack.actuator.service import ActuatorService
from telestack.actuator.settings import ActuatorOptions, ActuatorSettings
from telestack.actuator.tokens import IngestGrant, TokenStore
from telestack.core.commands import DeviceAck, DeviceCommand
from telestack.core.kafka import Record, ensure_topics
from telestack.core.settings import HttpSettings, KafkaSettings, LogSettings, MqttSettings, TopicSettings
from telestack.native import KafkaEndpoint, MqttEndpoint
from telestack.simulators.mqtt_device import DeviceFleet, SimulatedDevice
from tests import kafka_reader
from tests.harness import RunningService

# --- fake devices ------------------------------------------------------------------------------------------


class FakeDevice:
    """A device on MQTT: ``ok`` executes and acks, ``refuse`` acks with an error, ``silent`` never answers."""

    def __init__(self, client: mqtt_client.Client, device_id: str, mode: str = "ok") -> None:
        self.client = client
        self.device_id = device_id
        self.mode = mode
        self.state: dict[str, Any] = {"relay": False}
        self.received: list[DeviceCommand] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        client.on_message = self._on_message
        client.on_subscribe = lambda *args: self.subscribed.set()
        client.subscribe(f"devices/{device_id}/cmd", qos=1)
        if not self.subscribed.wait(10):
            raise TimeoutError(f"fake device {device_id} could not subscribe")

    def _on_message(self, client: mqtt_client.Client, userdata: Any, message: mqtt_client.MQTTMessage) -> None:
        command = DeviceCommand.model_validate_json(message.payload)
        with self._lock:
            self.received.append(command)
        if self.mode == "silent":
            return
        if self.mode == "refuse":
            ack = DeviceAck(id=command.id, status="error", reason="relay stuck", state=dict(self.state))
        else:
            if command.command == "on":
                self.state["relay"] = True
            elif command.command == "off":
                self.state["relay"] = False
            elif command.command == "toggle":
                self.state["relay"] = not self.state["relay"]
            elif command.command == "set_setpoint":
                self.state["setpoint"] = command.args["celsius"]
            ack = DeviceAck(id=command.id, status="ok", state=dict(self.state), ts_ms=int(time.time() * 1000))
        client.publish(f"devices/{self.device_id}/ack", ack.model_dump_json(), qos=1)

    def commands(self) -> list[DeviceCommand]:
        with self._lock:
            return list(self.received)


@pytest.fixture
def fake_device(connect_mqtt: Callable[..., mqtt_client.Client]) -> Callable[..., FakeDevice]:
    def make(device_id: str, mode: str = "ok") -> FakeDevice:
        return FakeDevice(connect_mqtt(), device_id, mode)

    return make


def mqtt_settings_of(mqtt: MqttEndpoint) -> MqttSettings:
    return MqttSettings(host=mqtt.host, port=mqtt.port, username=mqtt.username, password=mqtt.password)


@pytest.fixture
def simulate(mqtt: MqttEndpoint, unique: str) -> Iterator[Callable[..., DeviceFleet]]:
    """Runs the project's device simulators (`telestack.simulators`) on the broker; stopped after the test."""
    fleets: list[DeviceFleet] = []

    def start(*devices: SimulatedDevice, **options: Any) -> DeviceFleet:
        fleet = DeviceFleet(
            mqtt_settings_of(mqtt),
            list(devices),
            interval_s=3600,  # their telemetry is not what these tests look at
            client_id_prefix=f"sim-{unique}",
            **options,
        )
        fleet.start()
        fleets.append(fleet)
        return fleet

    yield start
    for fleet in fleets:
        fleet.stop()


# --- the registry and tokens -------------------------------------------------------------------------------


@dataclass
class Devices:
    """Device ids of one test (unique, so tests share the broker without crosstalk)."""

    plug: str
    lamp: str
    fermenter: str
    mute: str
    broken: str


def registry_yaml(devices: Devices) -> dict[str, Any]:
    return {
        "types": {
            "plug": {
                "display": ["relay"],
                "commands": {"on": {}, "off": {}, "toggle": {"description": "invert the relay"}},
            },
            "fermenter": {
                "display": ["setpoint"],
                "commands": {
                    "set_setpoint": {
                        "args": {"celsius": {"type": "number", "min": -2, "max": 30, "unit": "°C", "step": 0.1}}
                    },
                },
            },
        },
        "devices": [
            {"id": devices.plug, "type": "plug", "site": "lab", "description": "lab plug"},
            {"id": devices.lamp, "type": "plug", "site": "lab"},
            {"id": devices.fermenter, "type": "fermenter", "site": "brewery"},
            {"id": devices.mute, "type": "plug", "site": "lab"},
            {"id": devices.broken, "type": "plug", "site": "lab"},
        ],
    }


@dataclass
class Tokens:
    admin: str
    reader: str
    plugs: str  # command:plug-*
    hq: str  # ingest:hq, any measurement, devices box-*
    other_site: str  # ingest:annex
    energy_box: str  # ingest:hq, measurement energy of device box-7 only
    revoked: str


ACK_WAIT_S = 15.0  # how long a test waits for a command's ack (the command times out after that)
ANY = IngestGrant(measurements=("*",), devices=("*",))


def make_tokens(store: TokenStore) -> Tokens:
    revoked, _ = store.create("gone", ["admin"])
    store.revoke("gone")
    return Tokens(
        admin=store.create("admin", ["admin"])[0],
        reader=store.create("reader", ["read"])[0],
        plugs=store.create("grafana-button", ["command:plug-*"])[0],
        hq=store.create("box-hq", ["ingest:hq"], ingest=IngestGrant(measurements=("*",), devices=("box-*",)))[0],
        other_site=store.create("box-annex", ["ingest:annex"], ingest=ANY)[0],
        energy_box=store.create(
            "energy-box-7", ["ingest:hq"], ingest=IngestGrant(measurements=("energy",), devices=("box-7",))
        )[0],
        revoked=revoked,
    )


# --- a running actuator ------------------------------------------------------------------------------------


@dataclass
class RunningActuator:
    url: str
    settings: ActuatorSettings
    service: ActuatorService
    tokens: Tokens
    devices: Devices
    process: RunningService[ActuatorProcess]
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.process.stop(30)


def serve(settings: ActuatorSettings, tokens: Tokens, devices: Devices) -> RunningActuator:
    process = RunningService(ActuatorProcess(settings))
    server = process.service.server
    deadline = time.monotonic() + 60
    while not server.started:
        if not process.alive or time.monotonic() > deadline:
            raise RuntimeError("the actuator did not start (see the log above)")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return RunningActuator(f"http://127.0.0.1:{port}", settings, process.service.service, tokens, devices, process)


@dataclass
class ActuatorFactory:
    """Starts actuators on one test's topics, registry and token store (same ones across restarts)."""

    kafka: KafkaEndpoint
    mqtt: MqttEndpoint
    tmp_path: Path
    unique: str
    devices: Devices
    tokens: Tokens
    commands_topic: str
    telemetry_topic: str
    running: list[RunningActuator] = field(default_factory=list)

    def settings(self, **options: Any) -> ActuatorSettings:
        defaults: dict[str, Any] = {
            "http": HttpSettings(host="127.0.0.1", port=0),
            "devices_file": self.tmp_path / "devices.yaml",
            "tokens_file": self.tmp_path / "tokens.json",
            "mqtt_client_id": f"actuator-{self.unique}-{len(self.running)}",
            # A device's ack may take seconds on a loaded machine (ci47: an ack through Kafka missed 5 s): tests
            # that check acks wait up to ACK_WAIT_S; those that check time-outs set a short one.
            "command_timeout_s": ACK_WAIT_S,
            "max_wait_s": ACK_WAIT_S + 5,
            "replay_timeout_s": 20.0,
            "ui_wait_s": 5.0,
            "rate_limit_per_s": 0.0,
        }
        defaults.update(options)
        return ActuatorSettings(
            log=LogSettings(level="WARNING", format="console"),
            kafka=KafkaSettings(
                bootstrap_servers=self.kafka.bootstrap_servers,
                linger_ms=5,
                topics=TopicSettings(commands=self.commands_topic, telemetry=self.telemetry_topic),
            ),
            mqtt=mqtt_settings_of(self.mqtt),
            actuator=ActuatorOptions(**defaults),
        )

    def start(self, **options: Any) -> RunningActuator:
        running = serve(self.settings(**options), self.tokens, self.devices)
        self.running.append(running)
        return running

    def stop_all(self) -> None:
        for running in self.running:
            if running.process.alive:
                running.stop()


@pytest.fixture
def actuators(kafka: KafkaEndpoint, mqtt: MqttEndpoint, tmp_path: Path, unique: str) -> Iterator[ActuatorFactory]:
    devices = Devices(
        plug=f"plug-{unique}",
        lamp=f"lamp-{unique}",
        fermenter=f"f1-{unique}",
        mute=f"plug-mute-{unique}",
        broken=f"plug-broken-{unique}",
    )
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump(registry_yaml(devices)))
    tokens = make_tokens(TokenStore(tmp_path / "tokens.json"))
    commands_topic, telemetry_topic = f"test-commands-{unique}", f"test-telemetry-{unique}"
    ensure_topics(KafkaSettings(bootstrap_servers=kafka.bootstrap_servers), {commands_topic: 3, telemetry_topic: 3})
    factory = ActuatorFactory(kafka, mqtt, tmp_path, unique, devices, tokens, commands_topic, telemetry_topic)
    yield factory
    factory.stop_all()


@pytest.fixture
def actuator(actuators: ActuatorFactory) -> RunningActuator:
    """An actuator with the default test options (command timeout 5 s, no rate limit)."""
    return actuators.start()


# --- reading Kafka -----------------------------------------------------------------------------------------


def read_topic(
    kafka: KafkaEndpoint, topic: str, until: Callable[[list[Record]], object], timeout_s: float = 20
) -> list[Record]:
    """Every record of `topic` from the start, until `until(records)` holds (or the timeout: then fail).

    Read in no consumer group (`tests.kafka_reader`): in ci30, on a loaded machine, a group's first join outlasted
    the timeout (0 records read, the command's events already there).
    """
    return kafka_reader.read_topic(KafkaSettings(bootstrap_servers=kafka.bootstrap_servers), topic, until, timeout_s)


def events(records: list[Record]) -> list[dict[str, Any]]:
    return [json.loads(record.value or b"null") for record in records]

"""Simulated devices on a real Mosquitto: telemetry, commands obeyed, one ack per command, the CLI."""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from telestack.core.commands import DeviceAck, DeviceCommand
from telestack.core.runtime import Shutdown
from telestack.core.settings import MqttSettings
from telestack.native import Endpoints
from telestack.simulators.fermenters import Fermenter
from telestack.simulators.mqtt_device import DeviceFleet
from telestack.simulators.smart_plug import SmartPlug
from tests.polling import wait_until


class Listener:
    """Collects messages of some topics."""

    def __init__(self, client: paho.Client) -> None:
        self.client = client
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.subacks: set[int] = set()
        client.on_message = lambda c, u, msg: self.messages.put((msg.topic, bytes(msg.payload), msg.retain))
        client.on_subscribe = lambda c, u, mid, reasons, props: self.subacks.add(mid)

    def subscribe(self, *topics: str) -> None:
        """Subscribe and wait for the SUBACK, so nothing published afterwards is missed."""
        for topic in topics:
            result, mid = self.client.subscribe(topic, qos=1)
            assert result == paho.MQTT_ERR_SUCCESS
            wait_until(lambda: mid in self.subacks, timeout_s=10, what=f"SUBACK for {topic}")  # noqa: B023

    def next(self, topic: str, timeout_s: float = 10, where: Callable[[bytes], bool] = lambda p: True) -> bytes:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                got_topic, payload, _ = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if got_topic == topic and where(payload):
                return payload
        pytest.fail(f"nothing on {topic} within {timeout_s} s")


@pytest.fixture
def fleet(mqtt_settings: MqttSettings, unique: str) -> Iterator[DeviceFleet]:
    devices = [
        Fermenter(f"f-{unique}", random.Random(1), setpoint=18.0, rate_per_min=30.0),
        SmartPlug(f"plug-{unique}", random.Random(2), load_w=60.0),
    ]
    fleet = DeviceFleet(mqtt_settings, devices, interval_s=0.2, client_id_prefix=f"test-{unique}")
    shutdown = Shutdown()
    thread = threading.Thread(target=fleet.run, args=(shutdown,), name="fleet")
    thread.start()
    wait_until(lambda: all(link.client.is_connected() for link in fleet.links.values()), what="devices connected")
    yield fleet
    shutdown.set()
    thread.join(10)
    assert not thread.is_alive()


@pytest.fixture
def listener(connect_mqtt: Callable[..., paho.Client]) -> Listener:
    return Listener(connect_mqtt(client_id=f"listener-{uuid.uuid4().hex[:8]}"))


def _command(client: paho.Client, device: str, command: str, args: dict[str, object], command_id: str) -> None:
    cmd = DeviceCommand(id=command_id, command=command, args=args, ts_ms=int(time.time() * 1000))
    client.publish(f"devices/{device}/cmd", cmd.model_dump_json(), qos=1).wait_for_publish(5)


def test_fermenter_obeys_set_setpoint_and_the_temperature_follows(
    fleet: DeviceFleet, listener: Listener, unique: str
) -> None:
    device = f"f-{unique}"
    listener.subscribe(f"devices/{device}/ack", f"fermenters/{device}/#")
    assert listener.next(f"fermenters/{device}/status") == b"online"  # retained, sent on connect
    first = float(listener.next(f"fermenters/{device}/temperature"))

    _command(listener.client, device, "set_setpoint", {"celsius": 4.0}, "cmd-1")
    ack = DeviceAck.model_validate_json(listener.next(f"devices/{device}/ack"))
    assert (ack.id, ack.status) == ("cmd-1", "ok")
    assert ack.state["setpoint"] == 4.0 and ack.state["cooling"] is True
    assert listener.next(f"fermenters/{device}/setpoint") == b"4.0"

    # 30 °C/min = 0.5 °C/s: the temperature goes down steadily, it does not jump to 4.
    cooler = float(listener.next(f"fermenters/{device}/temperature", where=lambda p: float(p) < first - 1.0))
    assert cooler > 4.5


def test_refused_and_invalid_commands_get_error_acks(fleet: DeviceFleet, listener: Listener, unique: str) -> None:
    device = f"f-{unique}"
    listener.subscribe(f"devices/{device}/ack")
    _command(listener.client, device, "set_setpoint", {"celsius": 80}, "too-hot")
    ack = DeviceAck.model_validate_json(listener.next(f"devices/{device}/ack"))
    assert (ack.id, ack.status, ack.state["setpoint"]) == ("too-hot", "error", 18.0)
    assert ack.reason is not None and "outside" in ack.reason

    listener.client.publish(f"devices/{device}/cmd", json.dumps({"id": "bad-1", "command": 5}), qos=1)
    ack = DeviceAck.model_validate_json(listener.next(f"devices/{device}/ack"))
    assert (ack.id, ack.status) == ("bad-1", "error")


def test_plug_toggles_once_per_command_id(fleet: DeviceFleet, listener: Listener, unique: str) -> None:
    device = f"plug-{unique}"
    listener.subscribe(f"devices/{device}/ack", f"plugs/{device}/report")
    assert json.loads(listener.next(f"plugs/{device}/report"))["relay"] is True

    _command(listener.client, device, "toggle", {}, "t-1")
    ack = DeviceAck.model_validate_json(listener.next(f"devices/{device}/ack"))
    assert ack.state == {"relay": False, "power_w": 0.0}
    report = json.loads(listener.next(f"plugs/{device}/report"))
    assert (report["relay"], report["power"]) == (False, 0)

    _command(listener.client, device, "toggle", {}, "t-1")  # a redelivery of the same command
    again = DeviceAck.model_validate_json(listener.next(f"devices/{device}/ack"))
    assert again == ack  # answered again, not executed again
    assert fleet.links[device].device.state()["relay"] is False


def test_status_goes_offline_when_the_simulator_stops(
    mqtt_settings: MqttSettings, listener: Listener, unique: str
) -> None:
    device = f"f-{unique}"
    fleet = DeviceFleet(mqtt_settings, [Fermenter(device, random.Random(1))], interval_s=0.2, client_id_prefix=unique)
    shutdown = Shutdown()
    thread = threading.Thread(target=fleet.run, args=(shutdown,), kwargs={"ticks": 2})
    thread.start()
    thread.join(15)
    assert not thread.is_alive()
    listener.subscribe(f"fermenters/{device}/status")
    assert listener.next(f"fermenters/{device}/status") == b"offline"  # retained


def test_cli_publishes_meter_readings(endpoints: Endpoints, listener: Listener, unique: str) -> None:
    device = f"compteur-{unique}"
    listener.subscribe(f"teleinfo/{device}")
    env = {**os.environ, **endpoints.env(), "TELESTACK_DEVICE_LOGINS": "false"}  # the services' shared login
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "telestack"),
            *("simulate", "energy-meter", "--devices", device, "--interval", "0.1", "--ticks", "3"),
            *("--mqtt.client-id", f"cli-{unique}"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    readings = [json.loads(listener.next(f"teleinfo/{device}")) for _ in range(3)]
    assert all(r["product"] == "Eco-devices" for r in readings)
    assert readings[0]["T1_BASE"] <= readings[-1]["T1_BASE"]


def test_cli_devices_log_in_as_themselves(endpoints: Endpoints, listener: Listener) -> None:
    # Issue 16: each simulated device has its own login on the devices' listener (client id = login), as the
    # demo and compose run them; compteur-1 is one of the native broker's device users.
    listener.subscribe("teleinfo/compteur-1")
    env = {
        **os.environ,
        **endpoints.env(),
        "TELESTACK_MQTT__PORT": str(endpoints.mqtt.device_port),
        "TELESTACK_MQTT__PASSWORD": endpoints.mqtt.device_secret,
    }
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "telestack"),
            *("simulate", "energy-meter", "--devices", "compteur-1", "--interval", "0.1", "--ticks", "2"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(listener.next("teleinfo/compteur-1"))["product"] == "Eco-devices"
    wrong = subprocess.run(
        [str(Path(sys.executable).parent / "telestack"), "simulate", "energy-meter", "--devices", "compteur-1",
         "--ticks", "1"],
        env={**env, "TELESTACK_MQTT__PASSWORD": "not-the-secret"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert wrong.returncode != 0 and "CONNACK" in wrong.stderr

"""mosquitto/: the broker as compose runs it, started natively with the same files and the same entrypoint.

`mosquitto/entrypoint.sh` builds the password file from the environment (and devices.passwd), copies the ACL
and renders mosquitto.conf; here it runs with the data directory and port moved (MOSQUITTO_DATA_DIR, MQTT_PORT).
Checked: anonymous and wrong logins are refused, the ACL matrix of services, simulator and devices holds (MQTT 5
reason codes: 0x87 "not authorized" on PUBACK and SUBACK), the healthcheck works, TLS listens when certificates
are given.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from telestack.native.servers import free_port
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
NOT_AUTHORIZED = 0x87
PASSWORDS = {
    "mqtt-bridge": "bridge-" + uuid.uuid4().hex,
    "actuator": "actuator-" + uuid.uuid4().hex,
    "alerting": "alerting-" + uuid.uuid4().hex,
    "simulator": "simulator-" + uuid.uuid4().hex,
    "f4": "device-f4-" + uuid.uuid4().hex,  # a real device, from devices.passwd
}


@dataclass
class Broker:
    port: int
    tls_port: int | None
    config_dir: Path
    data_dir: Path
    process: subprocess.Popen[bytes]


def _start_broker(tmp_path: Path, *, tls: bool) -> Broker:
    config_dir = tmp_path / "config"
    shutil.copytree(ROOT / "mosquitto", config_dir)  # the same files compose mounts at /mosquitto/config
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(config_dir / "devices.passwd"), "f4", PASSWORDS["f4"]],
        check=True,
        capture_output=True,
    )
    if tls:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout", str(config_dir / "certs" / "server.key"), "-out", str(config_dir / "certs" / "server.crt"),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    port, tls_port = free_port(), free_port() if tls else None
    env = {
        **os.environ,
        "MOSQUITTO_CONFIG_DIR": str(config_dir),
        "MOSQUITTO_DATA_DIR": str(tmp_path / "data"),
        "MQTT_PORT": str(port),
        "MQTT_BRIDGE_PASSWORD": PASSWORDS["mqtt-bridge"],
        "MQTT_ACTUATOR_PASSWORD": PASSWORDS["actuator"],
        "MQTT_ALERTING_PASSWORD": PASSWORDS["alerting"],
        "MQTT_SIMULATOR_PASSWORD": PASSWORDS["simulator"],
        "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin",
    }
    if tls_port:
        env["MQTT_TLS_PORT"] = str(tls_port)
    if os.geteuid() == 0:
        env["MOSQUITTO_USER"] = "root"  # pytest's tmp dirs are not reachable by the mosquitto user
    log = open(tmp_path / "mosquitto.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        ["sh", str(config_dir / "entrypoint.sh")], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    broker = Broker(port, tls_port, config_dir, tmp_path / "data", process)

    def listening() -> bool:
        assert process.poll() is None, (tmp_path / "mosquitto.log").read_text()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", tls_port or port)) == 0

    wait_until(listening, timeout_s=20, what="mosquitto listening")
    return broker


def _stop(broker: Broker) -> None:
    broker.process.terminate()
    broker.process.wait(10)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    started = _start_broker(tmp_path_factory.mktemp("mosquitto"), tls=False)
    yield started
    _stop(started)


class Client:
    """A paho MQTT 5 client that records CONNACK, SUBACK, PUBACK reason codes and received messages."""

    def __init__(self, port: int, username: str | None, password: str | None, *, tls_ca: Path | None = None) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-{uuid.uuid4().hex[:8]}",
                                  protocol=paho.MQTTv5)  # fmt: skip
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca), cert_reqs=ssl.CERT_REQUIRED)
        self.connack: ReasonCode | None = None
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.pubacks: dict[int, ReasonCode] = {}
        self.received: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_until(lambda: self.connack is not None, timeout_s=10, what="CONNACK")

    def _on_connect(
        self, client: paho.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        self.connack = reason

    def _on_subscribe(
        self, client: paho.Client, userdata: object, mid: int, reasons: list[ReasonCode], props: object
    ) -> None:
        self.subacks[mid] = reasons

    def _on_publish(self, client: paho.Client, userdata: object, mid: int, reason: ReasonCode, props: object) -> None:
        self.pubacks[mid] = reason

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    @property
    def connected(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str) -> bool:
        """True when the broker granted the subscription."""
        _, mid = self.client.subscribe(topic, qos=1)
        reasons = wait_until(lambda: self.subacks.get(mid), timeout_s=5, what=f"SUBACK {topic}")
        return not reasons[0].is_failure

    def publish(self, topic: str, payload: str = "1") -> bool:
        """True when the broker accepted the QoS 1 message (PUBACK without a failure code)."""
        info = self.client.publish(topic, payload, qos=1, properties=Properties(paho.PacketTypes.PUBLISH))
        reason = wait_until(lambda: self.pubacks.get(info.mid), timeout_s=5, what=f"PUBACK {topic}")
        return not reason.is_failure

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def login(broker: Broker) -> Iterator[object]:
    clients: list[Client] = []

    def connect(username: str | None, password: str | None = None) -> Client:
        client = Client(broker.port, username, PASSWORDS.get(username or "") if password is None else password)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def test_anonymous_and_wrong_passwords_are_refused(login) -> None:  # type: ignore[no-untyped-def]
    anonymous = login(None)
    assert not anonymous.connected and anonymous.connack is not None and anonymous.connack.value in (0x86, 0x87)
    wrong = login("mqtt-bridge", "not-the-password")
    assert not wrong.connected
    unknown = login("f9", "whatever")
    assert not unknown.connected
    assert login("mqtt-bridge").connected


# Publishing: (user, topic, allowed); a refused QoS 1 publish gets PUBACK 0x87.
WRITE_MATRIX = [
    ("mqtt-bridge", "devices/f1/cmd", False),  # the bridge only reads
    ("mqtt-bridge", "fermenters/f1/temperature", False),
    ("actuator", "devices/f1/cmd", True),  # only the actuator commands devices
    ("actuator", "fermenters/f1/setpoint", False),
    ("alerting", "telestack/alerts/fermenter_setpoint/f1", True),  # alerting's MQTT notifier
    ("alerting", "devices/f1/cmd", False),
    ("simulator", "fermenters/f1/temperature", True),  # the simulators act as devices
    ("simulator", "teleinfo/compteur-1", True),
    ("simulator", "plugs/plug-1/report", True),
    ("simulator", "devices/f1/ack", True),
    ("simulator", "devices/f1/cmd", False),
    ("f4", "fermenters/f4/temperature", True),  # a real device (username = its id): its own topics only
    ("f4", "devices/f4/ack", True),
    ("f4", "fermenters/f1/temperature", False),
    ("f4", "devices/f1/ack", False),
    ("f4", "devices/f4/cmd", False),
]

# Reading: (user, subscription, a topic it matches, who publishes there, delivered). Mosquitto grants any
# SUBACK but delivers only what the user may read, so reading is checked by delivery.
READ_MATRIX = [
    ("mqtt-bridge", "fermenters/+/+", "fermenters/f1/temperature", "simulator", True),
    ("mqtt-bridge", "teleinfo/+", "teleinfo/compteur-1", "simulator", True),
    ("mqtt-bridge", "plugs/+/report", "plugs/plug-1/report", "simulator", True),
    ("mqtt-bridge", "devices/+/ack", "devices/f1/ack", "simulator", True),
    ("mqtt-bridge", "$share/bridges/fermenters/+/+", "fermenters/f2/setpoint", "simulator", True),
    ("mqtt-bridge", "devices/+/cmd", "devices/f1/cmd", "actuator", False),
    ("actuator", "devices/f1/ack", "devices/f1/ack", "simulator", True),
    ("actuator", "fermenters/#", "fermenters/f1/temperature", "simulator", False),
    ("alerting", "#", "fermenters/f1/temperature", "simulator", False),
    ("simulator", "devices/f1/cmd", "devices/f1/cmd", "actuator", True),
    ("simulator", "devices/+/ack", "devices/f4/ack", "f4", False),
    ("f4", "devices/f4/cmd", "devices/f4/cmd", "actuator", True),
    ("f4", "devices/f1/cmd", "devices/f1/cmd", "actuator", False),
    ("f4", "#", "fermenters/f1/temperature", "simulator", False),
]


@pytest.mark.parametrize(("user", "topic", "allowed"), WRITE_MATRIX, ids=lambda v: str(v))
def test_write_acl(login, user: str, topic: str, allowed: bool) -> None:  # type: ignore[no-untyped-def]
    client = login(user)
    assert client.connected, client.connack
    assert client.publish(topic) is allowed, f"{user} publishing on {topic}"


@pytest.mark.parametrize(("user", "subscription", "topic", "writer", "allowed"), READ_MATRIX, ids=lambda v: str(v))
def test_read_acl(login, user: str, subscription: str, topic: str, writer: str, allowed: bool) -> None:  # type: ignore[no-untyped-def]
    reader = login(user)
    assert reader.subscribe(subscription)
    payload = uuid.uuid4().hex
    publisher = login(writer)
    assert publisher.publish(topic, payload), f"{writer} may publish on {topic}"
    if allowed:
        wait_until(lambda: (topic, payload.encode()) in reader.received, timeout_s=5, what=f"{user} reading {topic}")
    else:
        time.sleep(0.5)  # the allowed rows see their message within milliseconds
        assert (topic, payload.encode()) not in reader.received, f"{user} received {topic}"


def test_messages_flow_only_where_the_acl_allows(login) -> None:  # type: ignore[no-untyped-def]
    bridge = login("mqtt-bridge")
    assert bridge.subscribe("fermenters/+/+")
    simulator = login("simulator")
    assert simulator.subscribe("devices/f1/cmd")
    device = login("f4")
    # a device's telemetry reaches the bridge; an impersonation of another device does not
    assert device.publish("fermenters/f4/temperature", "18.5")
    device.publish("fermenters/f1/temperature", "99.9")
    actuator = login("actuator")
    assert actuator.publish("devices/f1/cmd", '{"id": "c1"}')
    wait_until(lambda: ("fermenters/f4/temperature", b"18.5") in bridge.received, timeout_s=5, what="telemetry")
    wait_until(lambda: ("devices/f1/cmd", b'{"id": "c1"}') in simulator.received, timeout_s=5, what="command")
    time.sleep(0.5)  # the refused message would have arrived by now (same connection, in order)
    assert ("fermenters/f1/temperature", b"99.9") not in bridge.received


def test_the_healthcheck_script_logs_in(broker: Broker) -> None:
    env = {**os.environ, "MOSQUITTO_DATA_DIR": str(broker.data_dir), "MQTT_PORT": str(broker.port)}
    proc = subprocess.run(["sh", str(broker.config_dir / "healthcheck.sh")], env=env, capture_output=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    mode = (broker.data_dir / "passwd").stat().st_mode & 0o777
    assert mode == 0o600, f"password file mode {mode:o}"


def test_tls_listener_when_certificates_are_present(tmp_path: Path) -> None:
    broker = _start_broker(tmp_path, tls=True)
    try:
        assert broker.tls_port is not None
        ca = broker.config_dir / "certs" / "server.crt"  # self-signed: its own CA
        client = Client(broker.tls_port, "simulator", PASSWORDS["simulator"], tls_ca=ca)
        try:
            assert client.connected, client.connack
            assert client.publish("fermenters/f1/temperature", "18.0")
            assert not client.publish("devices/f1/cmd")  # same ACL as the plain listener
        finally:
            client.close()
        anonymous = Client(broker.tls_port, None, None, tls_ca=ca)
        try:
            assert not anonymous.connected
        finally:
            anonymous.close()
    finally:
        _stop(broker)

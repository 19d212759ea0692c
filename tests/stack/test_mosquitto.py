"""mosquitto/: the broker as compose runs it, started natively with the same files and the same entrypoint.

`mosquitto/entrypoint.sh` builds the password file from the environment (and devices.passwd), copies the ACL
and renders mosquitto.conf; here it runs with the data directory and ports moved (MOSQUITTO_DATA_DIR, MQTT_PORT,
MQTT_SERVICE_PORT). Devices log in on the devices' listener (compose's 1883), services on theirs (1884).
Checked: anonymous and wrong logins are refused, the ACL matrix of services and devices holds (MQTT 5 reason
codes: 0x87 "not authorized" on PUBACK and SUBACK), every device against every other device's topics and client
id, no device can take a service's session, the healthcheck works, TLS listens when certificates are given.
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

from telestack.core.mqtt import device_password
from telestack.native.servers import free_port
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
NOT_AUTHORIZED = 0x87
SIMULATOR_SECRET = "simulators-" + uuid.uuid4().hex
SIMULATED = ("f1", "f2", "f3", "compteur-1", "plug-1")  # docker-compose.yml's MQTT_SIMULATED_DEVICES
SERVICES = ("mqtt-bridge", "actuator", "alerting")
# The services' client ids in docker-compose.yml (and the scale file's bridge replicas).
SERVICE_CLIENT_IDS = ("telestack-mqtt-bridge", "telestack-mqtt-bridge-2", "telestack-actuator", "telestack-alerting")
PASSWORDS = {
    "mqtt-bridge": "bridge-" + uuid.uuid4().hex,
    "actuator": "actuator-" + uuid.uuid4().hex,
    "alerting": "alerting-" + uuid.uuid4().hex,
    "f4": "device-f4-" + uuid.uuid4().hex,  # a real device, from devices.passwd
    **{device: device_password(SIMULATOR_SECRET, device) for device in SIMULATED},
}
DEVICES = (*SIMULATED, "f4")


@dataclass
class Broker:
    port: int  # devices' listener (compose: 1883, published)
    service_port: int  # services' listener (compose: 1884, compose network only)
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
    port, service_port, tls_port = free_port(), free_port(), free_port() if tls else None
    env = {
        **os.environ,
        "MOSQUITTO_CONFIG_DIR": str(config_dir),
        "MOSQUITTO_DATA_DIR": str(tmp_path / "data"),
        "MQTT_PORT": str(port),
        "MQTT_SERVICE_PORT": str(service_port),
        "MQTT_BRIDGE_PASSWORD": PASSWORDS["mqtt-bridge"],
        "MQTT_ACTUATOR_PASSWORD": PASSWORDS["actuator"],
        "MQTT_ALERTING_PASSWORD": PASSWORDS["alerting"],
        "MQTT_SIMULATOR_PASSWORD": SIMULATOR_SECRET,
        "MQTT_SIMULATED_DEVICES": " ".join(SIMULATED),
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
    broker = Broker(port, service_port, tls_port, config_dir, tmp_path / "data", process)

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

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        *,
        tls_ca: Path | None = None,
        client_id: str | None = None,
        persistent: bool = False,
    ) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"acl-{uuid.uuid4().hex[:8]}",
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
        self.dropped = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *_args: self.dropped.set()
        properties = Properties(paho.PacketTypes.CONNECT)
        if persistent:
            properties.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=not persistent, properties=properties)
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
    """Connect as a user: services on the services' listener, devices (and unknown users) on the devices' one."""
    clients: list[Client] = []

    def connect(
        username: str | None, password: str | None = None, *, client_id: str | None = None, persistent: bool = False
    ) -> Client:
        port = broker.service_port if username in SERVICES else broker.port
        secret = PASSWORDS.get(username or "") if password is None else password
        client = Client(port, username, secret, client_id=client_id, persistent=persistent)
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
    ("f1", "fermenters/f1/temperature", True),  # the simulated devices are devices like any other
    ("compteur-1", "teleinfo/compteur-1", True),
    ("plug-1", "plugs/plug-1/report", True),
    ("f1", "devices/f1/ack", True),
    ("f1", "devices/f1/cmd", False),
    ("f1", "fermenters/f2/temperature", False),  # issue 16: the one `simulator` login wrote for every device
    ("compteur-1", "fermenters/f1/temperature", False),
    ("f4", "fermenters/f4/temperature", True),  # a real device (username = its id): its own topics only
    ("f4", "devices/f4/ack", True),
    ("f4", "fermenters/f1/temperature", False),
    ("f4", "devices/f1/ack", False),
    ("f4", "devices/f4/cmd", False),
]

# Reading: (user, subscription, a topic it matches, who publishes there, delivered). Mosquitto grants any
# SUBACK but delivers only what the user may read, so reading is checked by delivery.
READ_MATRIX = [
    ("mqtt-bridge", "fermenters/+/+", "fermenters/f1/temperature", "f1", True),
    ("mqtt-bridge", "teleinfo/+", "teleinfo/compteur-1", "compteur-1", True),
    ("mqtt-bridge", "plugs/+/report", "plugs/plug-1/report", "plug-1", True),
    ("mqtt-bridge", "devices/+/ack", "devices/f1/ack", "f1", True),
    ("mqtt-bridge", "$share/bridges/fermenters/+/+", "fermenters/f2/setpoint", "f2", True),
    ("mqtt-bridge", "devices/+/cmd", "devices/f1/cmd", "actuator", False),
    ("actuator", "devices/f1/ack", "devices/f1/ack", "f1", True),
    ("actuator", "fermenters/#", "fermenters/f1/temperature", "f1", False),
    ("alerting", "#", "fermenters/f1/temperature", "f1", False),
    ("f1", "devices/f1/cmd", "devices/f1/cmd", "actuator", True),
    ("f1", "devices/+/cmd", "devices/f2/cmd", "actuator", False),  # issue 16: `simulator` read every command
    ("f1", "devices/+/ack", "devices/f4/ack", "f4", False),
    ("f4", "devices/f4/cmd", "devices/f4/cmd", "actuator", True),
    ("f4", "devices/f1/cmd", "devices/f1/cmd", "actuator", False),
    ("f4", "#", "fermenters/f1/temperature", "f1", False),
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
    simulated = login("f1")
    assert simulated.subscribe("devices/f1/cmd")
    device = login("f4")
    # a device's telemetry reaches the bridge; an impersonation of another device does not
    assert device.publish("fermenters/f4/temperature", "18.5")
    device.publish("fermenters/f1/temperature", "99.9")
    actuator = login("actuator")
    assert actuator.publish("devices/f1/cmd", '{"id": "c1"}')
    wait_until(lambda: ("fermenters/f4/temperature", b"18.5") in bridge.received, timeout_s=5, what="telemetry")
    wait_until(lambda: ("devices/f1/cmd", b'{"id": "c1"}') in simulated.received, timeout_s=5, what="command")
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
        client = Client(broker.tls_port, "f1", PASSWORDS["f1"], tls_ca=ca, client_id="telestack-actuator")
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


# --- identities: no device speaks for another (issue 16) ----------------------------------------------------

# Every topic a device may publish under its own id (mosquitto/acl's patterns).
DEVICE_TOPICS = (
    "fermenters/{d}/temperature",
    "teleinfo/{d}",
    "plugs/{d}/report",
    "tele/{d}/SENSOR",
    "stat/{d}/POWER",
    "telegraf/{d}/fermenter",
    "devices/{d}/ack",
)


def _alive(client: Client) -> bool:
    """Still connected: a QoS 1 round trip (granted or not) completes and the broker never dropped it."""
    client.publish(f"probe/{uuid.uuid4().hex}")  # PUBACK, 0x87 or not: the connection answered
    return not client.dropped.is_set() and client.client.is_connected()


@pytest.mark.parametrize("device", DEVICES)
def test_identity_matrix_a_device_against_every_other_device(login, device: str) -> None:  # type: ignore[no-untyped-def]
    others = [other for other in DEVICES if other != device]
    me = login(device, client_id=f"chosen-{uuid.uuid4().hex[:6]}")
    assert me.connected, me.connack
    for topic in DEVICE_TOPICS:
        assert me.publish(topic.format(d=device)), f"{device} on its own {topic}"
        for other in others:
            assert not me.publish(topic.format(d=other)), f"{device} publishing as {other} on {topic}"
    for other in [device, *others]:
        assert me.subscribe(f"devices/{other}/cmd")  # granted; delivery is what the ACL decides
    actuator = login("actuator")
    for other in others:
        assert actuator.publish(f"devices/{other}/cmd", f"for {other}")
    assert actuator.publish(f"devices/{device}/cmd", "last")  # same publisher: arrives after the others
    wait_until(lambda: (f"devices/{device}/cmd", b"last") in me.received, timeout_s=5, what="its own command")
    assert [topic for topic, _ in me.received] == [f"devices/{device}/cmd"], "read another device's commands"

    # Client ids: whatever id the device sends, it gets its login; the others' sessions stay up.
    victims = {other: login(other, client_id=other) for other in others}  # devices usually send their id
    for other in others:
        assert login(device, client_id=other).connected
    dropped = [other for other, victim in victims.items() if not _alive(victim)]
    assert not dropped, f"{device} took the client id of {dropped}"


@pytest.mark.parametrize("device", DEVICES)
def test_no_device_takes_a_service_client_id(login, device: str) -> None:  # type: ignore[no-untyped-def]
    users = ("mqtt-bridge", "mqtt-bridge", "actuator", "alerting")
    logins = zip(SERVICE_CLIENT_IDS, users, strict=True)
    services = {cid: login(user, client_id=cid, persistent=True) for cid, user in logins}
    assert all(service.connected for service in services.values())
    for cid in SERVICE_CLIENT_IDS:
        assert login(device, client_id=cid).connected
        assert login(device, client_id=cid, persistent=True).connected
    dropped = [cid for cid, service in services.items() if not _alive(service)]
    assert not dropped, f"{device} dropped the services {dropped}"


def test_a_device_cannot_wipe_the_bridge_queue(login) -> None:  # type: ignore[no-untyped-def]
    # Issue 16's reproduction: f1 connecting as telestack-mqtt-bridge while the bridge was away lost its 5 queued
    # messages (clean start or resumed session alike).
    bridge = login("mqtt-bridge", client_id="telestack-mqtt-bridge", persistent=True)
    assert bridge.subscribe("fermenters/+/+")
    bridge.close()
    device = login("f2")
    payloads = [f"{i}.5" for i in range(5)]
    for payload in payloads:
        assert device.publish("fermenters/f2/temperature", payload)
    login("f1", client_id="telestack-mqtt-bridge")
    login("f1", client_id="telestack-mqtt-bridge", persistent=True)
    back = login("mqtt-bridge", client_id="telestack-mqtt-bridge", persistent=True)
    wait_until(lambda: len(back.received) >= 5, timeout_s=10, what="the 5 messages queued for the bridge")
    assert [payload for _, payload in back.received] == [p.encode() for p in payloads]


def test_a_device_named_like_a_service_is_refused_at_start(tmp_path: Path) -> None:
    # Its client id would be its login: a device called telestack-actuator would take the actuator's session.
    config_dir = tmp_path / "config"
    shutil.copytree(ROOT / "mosquitto", config_dir)
    for name in ("telestack-actuator", "mqtt-bridge"):
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(config_dir / "devices.passwd"), name, "x" * 12],
                       check=True, capture_output=True)  # fmt: skip
        env = {
            **os.environ,
            "MOSQUITTO_CONFIG_DIR": str(config_dir),
            "MOSQUITTO_DATA_DIR": str(tmp_path / "data"),
            "MQTT_BRIDGE_PASSWORD": "b" * 12,
            "MQTT_ACTUATOR_PASSWORD": "a" * 12,
            "MQTT_ALERTING_PASSWORD": "c" * 12,
            "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin",
        }
        proc = subprocess.run(["sh", str(config_dir / "entrypoint.sh")], env=env, capture_output=True, text=True,
                              timeout=20)  # fmt: skip
        assert proc.returncode == 1 and f"device login '{name}' is reserved for services" in proc.stderr

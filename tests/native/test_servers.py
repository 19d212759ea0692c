"""Native servers: what their start-up must survive."""

from __future__ import annotations

import base64
import threading
import uuid
from pathlib import Path

import pytest

from telestack.core.mqtt import connect, device_password, make_client
from telestack.core.settings import MqttSettings
from telestack.native import MqttEndpoint
from telestack.native.servers import KafkaServer
from tests.polling import wait_until


def test_kafka_formats_with_a_cluster_id_starting_with_a_dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: 1 id in 64 starts with "-", and passed as its own argument it was read as a flag.
    dashed = b"-" + base64.urlsafe_b64encode(uuid.uuid4().bytes)[1:]
    monkeypatch.setattr(base64, "urlsafe_b64encode", lambda _raw: dashed)
    server = KafkaServer(tmp_path)
    server.install()
    server.prepare()
    meta = (tmp_path / "data" / "meta.properties").read_text()
    assert f"cluster.id={dashed.rstrip(b'=').decode()}" in meta


# --- the shared test broker: devices' listener (issue 16) ---------------------------------------------------


class _Session:
    """A paho MQTT 5 client that counts what it receives and whether the broker dropped it."""

    def __init__(self, settings: MqttSettings, *, persistent: bool) -> None:
        self.received: list[bytes] = []
        self.dropped = threading.Event()
        self.subscribed = threading.Event()
        self.client = make_client(settings)
        self.client.on_message = lambda _c, _u, msg: self.received.append(bytes(msg.payload))
        self.client.on_subscribe = lambda *_args: self.subscribed.set()
        self.client.on_disconnect = lambda *_args: self.dropped.set()
        connect(self.client, settings, persistent=persistent)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_device_cannot_take_a_service_session(mqtt: MqttEndpoint, mqtt_settings: MqttSettings, unique: str) -> None:
    # Issue 16: device f1 connecting with the bridge's client id dropped the bridge and wiped its queued messages.
    service = mqtt_settings.model_copy(update={"client_id": f"svc-{unique}"})
    topic = f"test/{unique}/queued"
    bridge = _Session(service, persistent=True)
    bridge.client.subscribe(topic, qos=1)
    assert bridge.subscribed.wait(5)
    device = MqttSettings(
        host=mqtt.host,
        port=mqtt.device_port,
        username="f1",
        password=device_password(mqtt.device_secret, "f1"),  # type: ignore[arg-type]
        client_id=service.client_id,
    )
    intruder = _Session(device, persistent=False)  # while the service is connected
    intruder.close()
    assert not bridge.dropped.is_set() and bridge.client.is_connected()
    bridge.close()

    publisher = _Session(mqtt_settings.model_copy(update={"client_id": f"pub-{unique}"}), persistent=False)
    for i in range(5):
        publisher.client.publish(topic, str(i), qos=1).wait_for_publish(5)
    publisher.close()
    for persistent in (False, True):  # while it is away: a clean start, then a resumed session
        _Session(device, persistent=persistent).close()
    back = _Session(service, persistent=True)
    try:
        wait_until(lambda: len(back.received) >= 5, timeout_s=10, what="the 5 messages queued for the service")
        assert sorted(back.received) == [str(i).encode() for i in range(5)]
    finally:
        back.close()

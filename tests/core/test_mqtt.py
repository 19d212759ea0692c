"""MQTT against a real Mosquitto: authentication is on, QoS 1 delivery, persistent sessions."""

from __future__ import annotations

import queue
import threading
import uuid

import paho.mqtt.client as paho
import pytest
from pydantic import SecretStr

from telestack.core.mqtt import MqttError, connect, make_client
from telestack.core.settings import MqttSettings


def subscribe(client: paho.Client, topic: str) -> None:
    """Subscribe at QoS 1 and wait for the broker's SUBACK: a message published before it is not delivered.

    ci47: publishing right after `subscribe()` lost the race on a loaded machine (the SUBSCRIBE still in the
    subscriber's network thread), and the QoS 1 round trip's message never came.
    """
    granted = threading.Event()
    client.on_subscribe = lambda *args: granted.set()
    result, _ = client.subscribe(topic, qos=1)
    assert result == paho.MQTT_ERR_SUCCESS
    assert granted.wait(30), f"no SUBACK for {topic} within 30 s"


def test_qos1_publish_subscribe(mqtt_settings: MqttSettings, mqtt_prefix: str) -> None:
    received: queue.Queue[paho.MQTTMessage] = queue.Queue()
    sub = make_client(mqtt_settings, client_id=f"sub-{uuid.uuid4().hex[:6]}")
    sub.on_message = lambda client, userdata, msg: received.put(msg)
    connect(sub, mqtt_settings)
    subscribe(sub, f"{mqtt_prefix}/#")
    pub = make_client(mqtt_settings, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    connect(pub, mqtt_settings)
    try:
        info = pub.publish(f"{mqtt_prefix}/f1/temperature", "18.5", qos=1)
        info.wait_for_publish(10)
        msg = received.get(timeout=10)
        assert (msg.topic, msg.payload, msg.qos) == (f"{mqtt_prefix}/f1/temperature", b"18.5", 1)
    finally:
        for client in (sub, pub):
            client.disconnect()
            client.loop_stop()


def test_persistent_session_keeps_messages_while_subscriber_is_away(
    mqtt_settings: MqttSettings, mqtt_prefix: str
) -> None:
    client_id = f"persistent-{uuid.uuid4().hex[:6]}"
    sub = make_client(mqtt_settings, client_id=client_id)
    connect(sub, mqtt_settings, persistent=True)
    subscribe(sub, f"{mqtt_prefix}/#")
    sub.disconnect()
    sub.loop_stop()

    pub = make_client(mqtt_settings, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    connect(pub, mqtt_settings)
    for i in range(20):
        pub.publish(f"{mqtt_prefix}/d/{i}", str(i), qos=1).wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()

    received: queue.Queue[bytes] = queue.Queue()
    back = make_client(mqtt_settings, client_id=client_id)
    back.on_message = lambda client, userdata, msg: received.put(msg.payload)
    connect(back, mqtt_settings, persistent=True)
    try:
        got = sorted(int(received.get(timeout=10)) for _ in range(20))
        assert got == list(range(20))
    finally:
        back.disconnect()
        back.loop_stop()


def test_wrong_password_is_refused_with_a_clear_error(mqtt_settings: MqttSettings) -> None:
    wrong = mqtt_settings.model_copy(update={"password": SecretStr("definitely-not-it")})
    client = make_client(wrong, client_id=f"intruder-{uuid.uuid4().hex[:6]}")
    with pytest.raises(MqttError, match=r"mqtt\.username / mqtt\.password"):
        connect(client, wrong, timeout_s=3)


def test_anonymous_clients_are_refused(mqtt_settings: MqttSettings) -> None:
    anonymous = mqtt_settings.model_copy(update={"username": None, "password": None})
    client = make_client(anonymous, client_id=f"anon-{uuid.uuid4().hex[:6]}")
    with pytest.raises(MqttError):
        connect(client, anonymous, timeout_s=3)

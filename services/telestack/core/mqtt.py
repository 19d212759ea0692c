"""An MQTT client configured from `MqttSettings`: authentication, TLS, reconnect backoff, persistent sessions.

paho-mqtt does the protocol; this module only makes every telestack service connect the same way.
"""

from __future__ import annotations

import hashlib
import ssl
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from telestack.core.errors import TelestackError
from telestack.core.settings import MqttSettings

__all__ = ["MqttError", "connect", "device_password", "make_client", "wait_connected"]

# A persistent session outlives a disconnect by this long, so messages wait in the broker meanwhile (s).
SESSION_EXPIRY_S = 7 * 24 * 3600


class MqttError(TelestackError):
    """The MQTT broker could not be reached or refused us."""


def device_password(secret: str, device_id: str) -> str:
    """The MQTT password of simulated device `device_id`, derived from the simulators' `secret`.

    Each simulated device logs in as itself, as a real one would; the broker's password file gets the same
    value from ``mosquitto/entrypoint.sh`` (``printf '%s:%s' DEVICE SECRET | sha256sum``) or the native stack.

    >>> device_password("s3cret", "f1")[:16]
    'd2fdfd83930067b4'
    """
    return hashlib.sha256(f"{device_id}:{secret}".encode()).hexdigest()


def make_client(
    settings: MqttSettings,
    *,
    client_id: str | None = None,
    manual_ack: bool = False,
    client_class: type[paho.Client] = paho.Client,
) -> paho.Client:
    """A paho client (MQTT 5) with credentials, TLS and reconnect backoff set; not yet connected.

    `manual_ack`: the caller acknowledges each QoS 1 message with ``client.ack(mid, qos)``.
    `client_class`: a subclass of paho's client to build (the bridge's has a fast path for PUBLISH and PUBACK).
    """
    client = client_class(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or settings.client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    if settings.tls:
        client.tls_set(
            ca_certs=str(settings.ca_file) if settings.ca_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT
        )
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect(client: paho.Client, settings: MqttSettings, *, persistent: bool = False, timeout_s: float = 10) -> None:
    """Connect, start the network loop and wait for CONNACK.

    `persistent`: keep the session (subscriptions and queued QoS 1 messages) across disconnects, for
    `SESSION_EXPIRY_S`; the client id must then stay the same from run to run.
    """
    properties = Properties(PacketTypes.CONNECT)
    if persistent:
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
    try:
        client.connect(
            settings.host,
            settings.port,
            keepalive=settings.keepalive_s,
            clean_start=not persistent,
            properties=properties,
        )
    except OSError as exc:
        raise MqttError(f"cannot reach MQTT broker at {settings.host}:{settings.port}: {exc}") from exc
    client.loop_start()
    wait_connected(client, settings, timeout_s)


def wait_connected(client: paho.Client, settings: MqttSettings, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not client.is_connected():
        if time.monotonic() > deadline:
            client.loop_stop()
            raise MqttError(
                f"no CONNACK from {settings.host}:{settings.port} within {timeout_s:.0f} s "
                "(wrong mqtt.username / mqtt.password, or the broker is down?)"
            )
        time.sleep(0.02)

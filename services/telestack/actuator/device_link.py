"""The actuator's MQTT connection: publishes commands at QoS 1 and awaits the broker's PUBACK; reads acks.

Each command carries an MQTT 5 Message Expiry Interval equal to its ack timeout: a broker holding it for an
offline device drops it once the actuator has reported ``timed_out``, so a device that reconnects later does
not switch on a stale order. Response Topic and Correlation Data name the ack topic and the command id, for
devices that follow MQTT 5's request/response pattern.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from telestack.actuator.errors import Unavailable
from telestack.core.commands import DeviceAck
from telestack.core.mqtt import connect
from telestack.core.runtime import get_logger
from telestack.core.settings import MqttSettings

__all__ = ["DeviceLink", "PublishRefused"]

log = get_logger("actuator")

AckCallback = Callable[[str, DeviceAck], None]
SEEN_EVERY_S = 1.0  # a device's telemetry updates its last-seen time at most this often


class PublishRefused(Unavailable):
    """The broker answered the publish with an error reason code (e.g. not authorized for that topic)."""


def _resolve(future: asyncio.Future[ReasonCode], reason: ReasonCode) -> None:
    if not future.done():
        future.set_result(reason)


def _no_delay(client: paho.Client) -> None:
    """Send small packets at once: Nagle would hold a PUBLISH behind our unacknowledged PUBACK for up to the
    peer's delayed-ACK time (40 ms on Linux), on every command."""
    sock = client.socket()
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class DeviceLink:
    def __init__(
        self,
        client: paho.Client,
        settings: MqttSettings,
        ack_topics: Mapping[str, str],
        on_ack: AckCallback,
        on_invalid_ack: Callable[[str, str], None] | None = None,
        *,
        seen_topics: Mapping[str, str] | None = None,
        on_seen: Callable[[str], None] | None = None,
    ) -> None:
        """`ack_topics`: ack topic → device id, subscribed on every (re)connect; empty to read no acks.

        `seen_topics`: MQTT filter → device id; a live (not retained) message there calls `on_seen(device)`,
        at most once a second per device.
        """
        self._client = client
        self._settings = settings
        self._ack_topics = dict(ack_topics)
        self._on_ack = on_ack
        self._on_invalid_ack = on_invalid_ack
        self._seen_topics = dict(seen_topics or {}) if on_seen is not None else {}
        self._on_seen = on_seen
        self._seen_at: dict[str, float] = {}
        for topic_filter, device in self._seen_topics.items():
            client.message_callback_add(topic_filter, self._seen_callback(device))
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[ReasonCode]]] = {}
        self._early: dict[int, ReasonCode] = {}  # PUBACKs that arrived before their publish was registered
        self._abandoned: set[int] = set()  # publishes we stopped waiting for
        self.subscribed = threading.Event()
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish

    @property
    def connected(self) -> bool:
        return bool(self._client.is_connected())

    def connect(self, timeout_s: float = 10) -> None:
        """Connect (clean session: nothing stale is replayed to us) and wait until the ack topics are subscribed."""
        connect(self._client, self._settings, persistent=False, timeout_s=timeout_s)
        topics = len(self._ack_topics) + len(self._seen_topics)
        if topics and not self.subscribed.wait(timeout_s):
            raise Unavailable(f"the MQTT broker did not confirm the subscription to {topics} topics")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # --- callbacks (paho's network thread) ---------------------------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused", reason=str(reason))
            return
        log.info("MQTT connected", broker=f"{self._settings.host}:{self._settings.port}")
        _no_delay(client)
        subscriptions = [(topic, SubscribeOptions(qos=1)) for topic in sorted(self._ack_topics)]
        subscriptions += [(topic, SubscribeOptions(qos=0)) for topic in sorted(self._seen_topics)]
        if subscriptions:
            self.subscribed.clear()
            client.subscribe(subscriptions)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Any
    ) -> None:
        refused = [str(reason) for reason in reasons if reason.is_failure]
        if refused:
            log.error("ack topics not subscribed", reasons=refused)
        self.subscribed.set()

    def _seen_callback(self, device: str) -> Callable[[paho.Client, Any, paho.MQTTMessage], None]:
        def on_seen_message(client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
            if message.topic in self._ack_topics:  # a wide filter also matched the ack topic: it is an ack
                self._on_message(client, userdata, message)
            if message.retain or self._on_seen is None:
                return  # a retained message is the broker's memory, not the device speaking now
            now = time.monotonic()
            if now - self._seen_at.get(device, float("-inf")) >= SEEN_EVERY_S:
                self._seen_at[device] = now
                self._on_seen(device)

        return on_seen_message

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        device = self._ack_topics.get(message.topic)
        if device is None:
            return
        try:
            ack = DeviceAck.model_validate_json(message.payload)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            problem = f"{'.'.join(str(p) for p in first['loc']) or 'payload'}: {first['msg']}"
            log.warning("invalid ack ignored", device=device, problem=problem)
            if self._on_invalid_ack is not None:
                self._on_invalid_ack(device, problem)
            return
        self._on_ack(device, ack)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
        with self._lock:
            if mid in self._abandoned:
                self._abandoned.discard(mid)
                return
            entry = self._pending.pop(mid, None)
            if entry is None:
                self._early[mid] = reason
                return
        loop, future = entry
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, future, reason)

    # --- publishing (the event loop) ---------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        expiry_s: float,
        timeout_s: float,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        """Publish at QoS 1 and return when the broker confirmed it.

        Raises `PublishRefused` when the broker answered with an error, `Unavailable` when no PUBACK came in
        `timeout_s` (the client may still deliver it after a reconnect: the caller must not call it failed).
        """
        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = max(1, math.ceil(expiry_s))
        if response_topic:
            properties.ResponseTopic = response_topic
        if correlation:
            properties.CorrelationData = correlation
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ReasonCode] = loop.create_future()
        info = self._client.publish(topic, payload, qos=1, properties=properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise Unavailable(f"MQTT publish to {topic} not sent: {paho.error_string(info.rc)}")
        with self._lock:
            self._abandoned.discard(info.mid)
            early = self._early.pop(info.mid, None)
            if early is None:
                self._pending[info.mid] = (loop, future)
        if early is not None:
            future.set_result(early)
        try:
            reason = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            with self._lock:
                if self._pending.pop(info.mid, None) is not None:
                    self._abandoned.add(info.mid)
            raise Unavailable(
                f"the MQTT broker did not confirm the publish to {topic} within {timeout_s:.0f} s"
            ) from None
        if reason.is_failure:
            raise PublishRefused(f"the MQTT broker refused the publish to {topic}: {reason}")

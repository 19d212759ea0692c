"""MQTT notifier: each alert published as JSON on a topic built from its labels (QoS 1 by default)."""

from __future__ import annotations

import json
from dataclasses import asdict

import paho.mqtt.client as paho

from telestack.alerting.errors import NotifierError
from telestack.alerting.notifiers.base import Notification, Notifier
from telestack.alerting.notifiers.config import MqttNotifierConfig
from telestack.alerting.templates import render
from telestack.core.mqtt import MqttError, connect, make_client
from telestack.core.settings import MqttSettings

__all__ = ["MqttNotifier"]


class MqttNotifier(Notifier):
    def __init__(self, name: str, config: MqttNotifierConfig, settings: MqttSettings) -> None:
        super().__init__(name)
        self.config = config
        self.settings = settings
        self._client: paho.Client | None = None

    def _connected(self) -> paho.Client:
        if self._client is not None and self._client.is_connected():
            return self._client
        if self._client is None:
            client = make_client(self.settings, client_id=f"{self.settings.client_id}-alerting-{self.name}")
            try:
                connect(client, self.settings, timeout_s=self.config.timeout)
            except MqttError as exc:
                raise NotifierError(f"mqtt {self.name}: {exc}") from exc
            self._client = client
        elif not self._client.is_connected():
            raise NotifierError(f"mqtt {self.name}: not connected to {self.settings.host}:{self.settings.port}")
        return self._client

    def send(self, notification: Notification) -> None:
        client = self._connected()
        for alert in notification.alerts:
            values = {
                **alert.labels,
                "rule": alert.rule,
                "state": alert.state,
                "severity": alert.severity,
                "fingerprint": alert.fingerprint,
            }
            topic = render(self.config.topic, values)
            payload = json.dumps({**asdict(alert), "dedup_key": alert.dedup_key}, ensure_ascii=False)
            info = client.publish(topic, payload, qos=self.config.qos, retain=self.config.retain)
            try:
                info.wait_for_publish(timeout=self.config.timeout)
            except (RuntimeError, ValueError) as exc:
                raise NotifierError(f"mqtt {self.name}: publish to {topic} failed: {exc}") from exc
            if not info.is_published():
                raise NotifierError(f"mqtt {self.name}: publish to {topic} not acknowledged in time")

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

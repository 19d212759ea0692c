"""Webhook notifier: the notification as JSON, optionally signed with HMAC-SHA256.

Signature: ``X-Telestack-Signature: sha256=<hex>`` over ``<X-Telestack-Timestamp>.<body>`` with the shared
key, so a receiver can check both origin and freshness. ``Idempotency-Key`` carries the notification id:
the same alerts in the same states always get the same key, so a retried delivery can be recognised.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from telestack.alerting.errors import NotifierError
from telestack.alerting.notifiers.base import Notification, Notifier, secret_from_env
from telestack.alerting.notifiers.config import WebhookConfig

__all__ = ["WebhookNotifier", "sign"]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Telestack-Signature`` value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookNotifier(Notifier):
    def __init__(self, name: str, config: WebhookConfig) -> None:
        super().__init__(name)
        self.config = config
        self._secret = secret_from_env(config.hmac_secret_env, name, "hmac_secret_env")
        self._client = httpx.Client(timeout=config.timeout)

    def send(self, notification: Notification) -> None:
        body = json.dumps(notification.to_dict(), ensure_ascii=False).encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "telestack-alerting",
            "Idempotency-Key": notification.id,
            **self.config.headers,
        }
        if self._secret is not None:
            timestamp = str(int(time.time()))
            headers["X-Telestack-Timestamp"] = timestamp
            headers["X-Telestack-Signature"] = sign(self._secret, timestamp, body)
        try:
            response = self._client.request(self.config.method, self.config.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise NotifierError(f"webhook {self.name}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise NotifierError(f"webhook {self.name}: HTTP {response.status_code}: {response.text[:200]}")

    def close(self) -> None:
        self._client.close()

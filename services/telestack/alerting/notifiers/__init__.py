"""Notifiers: webhook, email, SMS gateway and MQTT behind one small interface (`Notifier.send`).

`build_notifier` makes one from its rules-file config; `NotifierWorker` runs it in its own thread.
"""

from __future__ import annotations

from telestack.alerting.notifiers.base import AlertMessage, Notification, Notifier, secret_from_env
from telestack.alerting.notifiers.config import (
    EmailConfig,
    MqttNotifierConfig,
    NotifierConfig,
    SmsConfig,
    WebhookConfig,
)
from telestack.alerting.notifiers.worker import NotifierWorker, SendResult
from telestack.core.settings import MqttSettings

__all__ = [
    "AlertMessage",
    "EmailConfig",
    "MqttNotifierConfig",
    "Notification",
    "Notifier",
    "NotifierConfig",
    "NotifierWorker",
    "SendResult",
    "SmsConfig",
    "WebhookConfig",
    "build_notifier",
    "secret_from_env",
]


def build_notifier(name: str, config: NotifierConfig, *, mqtt: MqttSettings | None = None) -> Notifier:
    """The notifier `config` describes; missing secrets raise `ConfigError` here, at start."""
    if isinstance(config, WebhookConfig):
        from telestack.alerting.notifiers.webhook import WebhookNotifier

        return WebhookNotifier(name, config)
    if isinstance(config, EmailConfig):
        from telestack.alerting.notifiers.email import EmailNotifier

        return EmailNotifier(name, config)
    if isinstance(config, SmsConfig):
        from telestack.alerting.notifiers.sms import SmsNotifier

        return SmsNotifier(name, config)
    from telestack.alerting.notifiers.mqtt import MqttNotifier

    return MqttNotifier(name, config, mqtt or MqttSettings())

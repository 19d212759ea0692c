"""Email notifier: a plain-text message over SMTP, with STARTTLS (default), implicit TLS or none."""

from __future__ import annotations

import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from telestack.alerting.errors import NotifierError
from telestack.alerting.notifiers.base import Notification, Notifier, secret_from_env
from telestack.alerting.notifiers.config import EmailConfig
from telestack.alerting.templates import render

__all__ = ["EmailNotifier"]

NS = 1_000_000_000


def _when(t_ns: int | None) -> str:
    if t_ns is None:
        return "-"
    return datetime.fromtimestamp(t_ns / NS).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


class EmailNotifier(Notifier):
    def __init__(self, name: str, config: EmailConfig) -> None:
        super().__init__(name)
        self.config = config
        self._password = secret_from_env(config.password_env, name, "password_env")
        self._context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)

    def message(self, notification: Notification) -> EmailMessage:
        config = self.config
        msg = EmailMessage()
        msg["Subject"] = render(config.subject, notification.template_values())
        msg["From"] = config.sender
        msg["To"] = ", ".join(config.to)
        msg["Date"] = format_datetime(datetime.now().astimezone())
        msg["Message-ID"] = make_msgid(idstring=notification.id[:16], domain="telestack")
        msg["X-Telestack-Notification"] = notification.id
        lines = [notification.text, ""]
        for alert in notification.alerts:
            lines.append(f"— {alert.rule} [{alert.severity}] {alert.state.upper()}")
            lines.append(f"  {', '.join(f'{k}={v}' for k, v in sorted(alert.labels.items()))}")
            if alert.value is not None:
                setpoint = f" (setpoint {alert.setpoint:g})" if alert.setpoint is not None else ""
                lines.append(f"  value {alert.value:g}{setpoint}")
            lines.append(f"  since {_when(alert.active_since_ns)}")
            if alert.resolved_at_ns is not None and alert.state == "resolved":
                lines.append(f"  resolved {_when(alert.resolved_at_ns)}")
            for key, text in sorted(alert.annotations.items()):
                if key != "summary":
                    lines.append(f"  {key}: {text}")
        msg.set_content("\n".join(lines) + "\n")
        return msg

    def send(self, notification: Notification) -> None:
        config = self.config
        msg = self.message(notification)
        try:
            smtp: smtplib.SMTP
            if config.security == "tls":
                smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout, context=self._context)
            else:
                smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
            with smtp:
                if config.security == "starttls":
                    smtp.starttls(context=self._context)
                if config.username:
                    smtp.login(config.username, self._password or "")
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise NotifierError(f"email {self.name} via {config.host}:{config.port}: {exc}") from exc

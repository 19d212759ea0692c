"""How each notifier is configured in the rules file (``notifiers:``), one model per `type`.

Secrets never sit in the rules file: a notifier names the environment variable that holds its secret
(``hmac_secret_env``, ``password_env``, ``auth.secret_env``) and the service refuses to start when it is unset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from telestack.core.durations import Duration

__all__ = [
    "EmailConfig",
    "MqttNotifierConfig",
    "NotifierConfig",
    "SmsAuth",
    "SmsConfig",
    "WebhookConfig",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _NotifierBase(_Model):
    send_resolved: bool = Field(True, description="also notify when an alert resolves")
    max_attempts: int = Field(5, ge=1, description="tries per notification before giving up (until next retry)")
    retry_backoff: Duration = Field(1.0, gt=0, description="first wait between tries; doubles each time")
    max_backoff: Duration = Field(60.0, gt=0, description="longest wait between tries")
    timeout: Duration = Field(10.0, gt=0, description="network timeout of one try")

    def templates(self) -> dict[str, str]:
        """The templates of this config, by key, for validation."""
        return {}


class WebhookConfig(_NotifierBase):
    """POST a JSON document (every alert of the group) to a URL; optionally signed with HMAC-SHA256."""

    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://", description="receiver URL")
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers")
    hmac_secret_env: str | None = Field(
        None, description="environment variable holding the HMAC key; signs the body (X-Telestack-Signature)"
    )


class EmailConfig(_NotifierBase):
    """Send a plain-text email over SMTP (STARTTLS by default, or implicit TLS, or none on a trusted LAN)."""

    type: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = Field(None, description="environment variable holding the SMTP password")
    sender: str = Field(description="From: address")
    to: list[str] = Field(min_length=1, description="recipients")
    subject: str = Field("[{status}] {title}", description="subject template ({status}, {title}, {count})")
    ca_file: Path | None = Field(None, description="CA bundle to verify the server (default: system CAs)")

    def templates(self) -> dict[str, str]:
        return {"subject": self.subject}


class SmsAuth(_Model):
    type: Literal["basic", "bearer", "header"]
    username: str | None = Field(None, description="basic auth user (e.g. the account SID)")
    secret_env: str = Field(description="environment variable holding the password, token or key")
    header: str = Field("Authorization", description="header name for type: header")


class SmsConfig(_NotifierBase):
    """An SMS through any HTTP gateway: URL, method, query/form/JSON body templates, auth.

    Each recipient gets one request. Templates see ``{to}``, ``{text}``, ``{status}``, ``{count}``, ``{title}``.
    """

    type: Literal["sms"]
    url: str = Field(pattern=r"^https?://")
    method: Literal["GET", "POST", "PUT"] = "POST"
    recipients: list[str] = Field(min_length=1, description="phone numbers (or whatever the gateway calls `to`)")
    params: dict[str, str] = Field(default_factory=dict, description="query parameters (templates)")
    form: dict[str, str] | None = Field(None, description="form-encoded body (templates)")
    json_body: dict[str, Any] | None = Field(None, alias="json", description="JSON body; string leaves are templates")
    body: str | None = Field(None, description="raw body template (with content_type)")
    content_type: str = Field("text/plain; charset=utf-8", description="Content-Type of a raw body")
    headers: dict[str, str] = Field(default_factory=dict)
    auth: SmsAuth | None = None
    max_length: int = Field(480, ge=20, description="longest text sent; longer texts are cut with …")

    @model_validator(mode="after")
    def _one_body(self) -> SmsConfig:
        if sum(b is not None for b in (self.form, self.json_body, self.body)) > 1:
            raise ValueError("give at most one of form, json or body")
        return self

    def templates(self) -> dict[str, str]:
        found: dict[str, str] = {f"params.{k}": v for k, v in self.params.items()}
        found.update({f"form.{k}": v for k, v in (self.form or {}).items()})
        found.update({f"headers.{k}": v for k, v in self.headers.items()})
        if self.body is not None:
            found["body"] = self.body

        def walk(node: Any, path: str) -> None:
            if isinstance(node, str):
                found[path] = node
            elif isinstance(node, dict):
                for key, value in node.items():
                    walk(value, f"{path}.{key}")
            elif isinstance(node, list):
                for index, value in enumerate(node):
                    walk(value, f"{path}[{index}]")

        walk(self.json_body, "json")
        return found


class MqttNotifierConfig(_NotifierBase):
    """Publish each alert as JSON on an MQTT topic (the service's MQTT connection settings are used)."""

    type: Literal["mqtt"]
    topic: str = Field("telestack/alerts/{rule}", description="topic template (labels, rule, state, severity)")
    qos: Literal[0, 1, 2] = 1
    retain: bool = False

    def templates(self) -> dict[str, str]:
        return {"topic": self.topic}


NotifierConfig = Annotated[
    WebhookConfig | EmailConfig | SmsConfig | MqttNotifierConfig,
    Field(discriminator="type"),
]

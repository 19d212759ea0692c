"""SMS through an HTTP gateway: one request per recipient, shaped by templates.

Most SMS APIs fit one of these shapes (examples in ``config/alerts.yaml``):

- form body + basic auth (e.g. Twilio: ``form: {To: "{to}", From: "...", Body: "{text}"}``);
- JSON body + bearer token (``json: {to: "{to}", message: "{text}"}``);
- query parameters on a GET (e.g. Free Mobile: ``params: {user: ..., msg: "{text}"}``, key in ``auth: header``
  or a parameter);
- a raw `body` template with its `content_type`.

Templates see ``{to}``, ``{text}`` (cut to `max_length`), ``{status}``, ``{STATUS}``, ``{count}``, ``{title}``.
A retry skips the recipients the gateway already accepted.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from telestack.alerting.errors import NotifierError
from telestack.alerting.notifiers.base import Notification, Notifier, secret_from_env
from telestack.alerting.notifiers.config import SmsConfig
from telestack.alerting.templates import render

__all__ = ["SmsNotifier"]


def _render_tree(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, str):
        return render(node, values)
    if isinstance(node, dict):
        return {key: _render_tree(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_render_tree(value, values) for value in node]
    return node


class SmsNotifier(Notifier):
    def __init__(self, name: str, config: SmsConfig) -> None:
        super().__init__(name)
        self.config = config
        self._secret = secret_from_env(config.auth.secret_env, name, "auth.secret_env") if config.auth else None
        self._client = httpx.Client(timeout=config.timeout)
        self._delivered: dict[str, set[str]] = {}  # notification id → recipients already accepted

    def _text(self, notification: Notification) -> str:
        text = notification.text
        limit = self.config.max_length
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def request_for(self, notification: Notification, recipient: str) -> httpx.Request:
        """The HTTP request that texts `recipient` (public so a config can be checked without sending)."""
        config = self.config
        values = {**notification.template_values(), "to": recipient, "text": self._text(notification)}
        headers = {key: render(value, values) for key, value in config.headers.items()}
        auth: httpx.Auth | None = None
        if config.auth is not None and self._secret is not None:
            if config.auth.type == "basic":
                auth = httpx.BasicAuth(config.auth.username or "", self._secret)
            elif config.auth.type == "bearer":
                headers["Authorization"] = f"Bearer {self._secret}"
            else:
                headers[config.auth.header] = self._secret
        kwargs: dict[str, Any] = {"params": {key: render(value, values) for key, value in config.params.items()}}
        if config.form is not None:
            kwargs["data"] = {key: render(value, values) for key, value in config.form.items()}
        elif config.json_body is not None:
            kwargs["content"] = json.dumps(_render_tree(config.json_body, values), ensure_ascii=False).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        elif config.body is not None:
            kwargs["content"] = render(config.body, values).encode("utf-8")
            headers.setdefault("Content-Type", config.content_type)
        request = self._client.build_request(config.method, config.url, headers=headers, **kwargs)
        if auth is not None:
            request = next(auth.auth_flow(request))
        return request

    def send(self, notification: Notification) -> None:
        done = self._delivered.setdefault(notification.id, set())
        for recipient in self.config.recipients:
            if recipient in done:
                continue
            request = self.request_for(notification, recipient)
            try:
                response = self._client.send(request)
            except httpx.HTTPError as exc:
                raise NotifierError(f"sms {self.name} to {recipient}: {exc.__class__.__name__}: {exc}") from exc
            if response.status_code >= 300:
                raise NotifierError(
                    f"sms {self.name} to {recipient}: HTTP {response.status_code}: {response.text[:200]}"
                )
            done.add(recipient)
        del self._delivered[notification.id]

    def close(self) -> None:
        self._client.close()

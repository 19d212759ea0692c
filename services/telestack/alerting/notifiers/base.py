"""What every notifier shares: the `Notification` it delivers and the small `Notifier` interface.

A notifier only knows how to deliver one `Notification` (one or more alerts of one group) over its
transport, raising `NotifierError` when it could not; retries, backoff, queueing and deduplication are done
once for all of them by `NotifierWorker` and the `Dispatcher`.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

from telestack.core.errors import ConfigError

__all__ = ["AlertMessage", "Notification", "Notifier", "secret_from_env"]


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One alert inside a notification, as receivers see it."""

    fingerprint: str
    rule: str
    state: str  # "firing" or "resolved"
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    text: str  # the one line people read (the rule's summary template, rendered)
    value: float | None
    setpoint: float | None
    active_since_ns: int | None
    fired_at_ns: int | None
    resolved_at_ns: int | None
    repeat: bool = False  # a reminder of an alert already notified (repeat_interval)

    @property
    def dedup_key(self) -> str:
        """Same alert, same state, same episode → same key: receivers may drop repeats of it."""
        return f"{self.fingerprint}|{self.state}|{self.fired_at_ns}"


@dataclass(frozen=True, slots=True)
class Notification:
    """What one notifier delivers at once: the alerts of one group that need telling."""

    notifier: str
    group_key: str
    group_labels: dict[str, str]
    alerts: tuple[AlertMessage, ...]
    created_ns: int
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            digest = hashlib.sha256(
                "\n".join([self.notifier, self.group_key, *(a.dedup_key for a in self.alerts)]).encode()
            ).hexdigest()[:24]
            object.__setattr__(self, "id", digest)

    @property
    def status(self) -> str:
        return "firing" if any(a.state == "firing" for a in self.alerts) else "resolved"

    @property
    def title(self) -> str:
        if len(self.alerts) == 1:
            return self.alerts[0].text
        rules = sorted({a.rule for a in self.alerts})
        return f"{len(self.alerts)} alerts: {', '.join(rules)}"

    @property
    def text(self) -> str:
        return "\n".join(a.text for a in self.alerts)

    def template_values(self) -> dict[str, Any]:
        return {
            **self.group_labels,
            "status": self.status,
            "STATUS": self.status.upper(),
            "title": self.title,
            "text": self.text,
            "count": len(self.alerts),
            "group": self.group_key,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "id": self.id,
            "receiver": self.notifier,
            "status": self.status,
            "group_key": self.group_key,
            "group_labels": self.group_labels,
            "title": self.title,
            "text": self.text,
            "created_ns": self.created_ns,
            "alerts": [{**asdict(a), "dedup_key": a.dedup_key} for a in self.alerts],
        }


class Notifier(ABC):
    """One way of reaching people. Subclasses implement `send`; `close` releases connections."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def send(self, notification: Notification) -> None:
        """Deliver `notification` or raise `NotifierError`; may be called again with the same one (retry)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once when the service stops."""


def secret_from_env(variable: str | None, notifier: str, setting: str) -> str | None:
    """The secret held by environment `variable`; a named but unset variable is a `ConfigError` at start."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"notifier {notifier!r}: {setting} names environment variable {variable}, which is not set")
    return value

"""Alert instances and their states: one instance per (rule, matching series).

    normal ──(condition true)──► pending ──(true for `for`)──► firing ──(clear)──► resolved
       ▲                            │                                               │
       └────────(false)─────────────┘            (true again) ──► pending ◄─────────┘

With ``for: 0`` an instance goes straight from normal (or resolved) to firing. An instance's record
(`to_record` / `Instance.from_record`) is what the durable state store keeps, keyed by its fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["AlertState", "Instance", "NotifyMark", "StateChange", "fingerprint_of"]


class AlertState(StrEnum):
    NORMAL = "normal"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class NotifyMark:
    """What a notifier last delivered for an instance: the state it announced and when (ns)."""

    state: AlertState
    at_ns: int


def fingerprint_of(rule: str, measurement: str, tags: dict[str, str]) -> str:
    """A stable, readable id: ``rule/measurement,tag=value,...`` (tags sorted)."""
    tag_text = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
    return f"{rule}/{measurement}" + (f",{tag_text}" if tag_text else "")


@dataclass(slots=True, eq=False)
class Instance:
    """The live state of one rule on one series. Mutated only by the engine and the dispatcher."""

    rule: str
    fingerprint: str
    measurement: str
    tags: dict[str, str]
    labels: dict[str, str]
    state: AlertState = AlertState.NORMAL
    active: bool = False
    active_since_ns: int | None = None
    fired_at_ns: int | None = None
    resolved_at_ns: int | None = None
    changed_at_ns: int | None = None
    value: float | None = None
    setpoint: float | None = None
    derived: float | None = None
    last_seen_ns: int | None = None
    last_point_ns: int | None = None
    expected_since_ns: int | None = None  # an expected device (no-data `expect`): when alerting began waiting
    replay_guard_ns: int = -1
    origin: int | None = None
    notified: dict[str, NotifyMark] = field(default_factory=dict)
    tracker: Any = None  # the condition's running state (rate or window), not persisted
    saved_point_ns: int | None = None  # last_point_ns when the record was last persisted
    dirty: bool = True  # state or delivered state changed since the record was persisted

    @property
    def unsaved(self) -> bool:
        """True when the persisted record is behind (a state change, or newer values to checkpoint)."""
        return self.dirty or self.last_point_ns != self.saved_point_ns

    def to_record(self) -> dict[str, Any]:
        return {
            "v": 1,
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "measurement": self.measurement,
            "tags": self.tags,
            "state": self.state.value,
            "active": self.active,
            "active_since_ns": self.active_since_ns,
            "fired_at_ns": self.fired_at_ns,
            "resolved_at_ns": self.resolved_at_ns,
            "changed_at_ns": self.changed_at_ns,
            "value": self.value,
            "setpoint": self.setpoint,
            "derived": self.derived,
            "last_seen_ns": self.last_seen_ns,
            "last_point_ns": self.last_point_ns,
            "expected_since_ns": self.expected_since_ns,
            "origin": self.origin,
            "notified": {name: [mark.state.value, mark.at_ns] for name, mark in self.notified.items()},
        }

    def restore(self, record: dict[str, Any]) -> None:
        """Take the persisted state of `record` (a `to_record` of an earlier run)."""
        self.state = AlertState(record["state"])
        self.active = bool(record.get("active", False))
        self.active_since_ns = record.get("active_since_ns")
        self.fired_at_ns = record.get("fired_at_ns")
        self.resolved_at_ns = record.get("resolved_at_ns")
        self.changed_at_ns = record.get("changed_at_ns")
        self.value = record.get("value")
        self.setpoint = record.get("setpoint")
        self.derived = record.get("derived")
        self.last_seen_ns = record.get("last_seen_ns")
        self.last_point_ns = record.get("last_point_ns")
        self.expected_since_ns = record.get("expected_since_ns")
        # Points up to the last one this state had seen are replays after a restart: skip them.
        self.replay_guard_ns = self.last_point_ns if self.last_point_ns is not None else -1
        self.origin = record.get("origin")
        self.notified = {
            name: NotifyMark(AlertState(mark[0]), int(mark[1])) for name, mark in (record.get("notified") or {}).items()
        }
        self.saved_point_ns = self.last_point_ns
        self.dirty = False


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition of one instance, with the values and rendered annotations of that moment."""

    instance: Instance
    previous: AlertState
    state: AlertState
    at_ns: int
    value: float | None
    setpoint: float | None
    derived: float | None
    annotations: dict[str, str]

    def to_event(self, severity: str) -> dict[str, Any]:
        """The JSON document published on the ``alerts`` topic."""
        inst = self.instance
        return {
            "type": "alert",
            "fingerprint": inst.fingerprint,
            "rule": inst.rule,
            "severity": severity,
            "state": self.state.value,
            "previous": self.previous.value,
            "at_ns": self.at_ns,
            "measurement": inst.measurement,
            "tags": inst.tags,
            "labels": inst.labels,
            "annotations": self.annotations,
            "value": self.value,
            "setpoint": self.setpoint,
            "derived": self.derived,
            "active_since_ns": inst.active_since_ns,
            "fired_at_ns": inst.fired_at_ns,
            "resolved_at_ns": inst.resolved_at_ns,
        }

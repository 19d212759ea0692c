"""The audit trail: every command and its outcome as JSON records of Kafka ``commands``, key = device id.

    {"type": "command", "command_id": "…", "device": "plug-1", "command": "on", "args": {},
     "actor": "grafana-button", "state": "pending", "ts_ms": …, "token_id": "ab12cd34",
     "idempotency_key": "…", "timeout_s": 10.0}
    {"type": "outcome", "command_id": "…", "device": "plug-1", "state": "acked" | "failed" | "timed_out",
     "reason": …, "device_state": {…}, "actor": "grafana-button", "ts_ms": …}

Who (``actor``: the token's name), what (``command``, ``args``, ``device``), when (``ts_ms``) and the result
(``state``, ``reason``). The ``command`` record is confirmed by Kafka before the command is published, so
nothing reaches a device without a trace. `AuditEvent` extends the shared `CommandEvent` with the fields the
actuator needs to rebuild its memory from the topic after a restart; other readers ignore them.
"""

from __future__ import annotations

from pydantic import Field

from telestack.actuator.tracker import CommandRecord
from telestack.core.commands import CommandEvent

__all__ = ["AuditEvent", "command_event", "outcome_event"]


class AuditEvent(CommandEvent):
    token_id: str | None = Field(None, description="id of the token used (not secret), for idempotency keys")
    idempotency_key: str | None = Field(None, description="the request's Idempotency-Key header, if any")
    timeout_s: float | None = Field(None, description="how long the device had to ack, s")


def command_event(record: CommandRecord) -> AuditEvent:
    return AuditEvent(
        type="command",
        command_id=record.id,
        device=record.device,
        ts_ms=record.created_ms,
        command=record.command,
        args=record.args,
        state="pending",
        actor=record.actor,
        token_id=record.token_id,
        idempotency_key=record.idempotency_key,
        timeout_s=record.timeout_s,
    )


def outcome_event(record: CommandRecord) -> AuditEvent:
    return AuditEvent(
        type="outcome",
        command_id=record.id,
        device=record.device,
        ts_ms=record.completed_ms or record.created_ms,
        command=record.command,
        args=record.args,
        state=record.state,
        status=None if record.state == "timed_out" else ("ok" if record.state == "acked" else "error"),
        reason=record.reason,
        actor=record.actor,
        device_state=record.device_state,
    )

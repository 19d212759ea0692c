"""Where each command stands, and what each device last said: the actuator's memory.

States (`CommandState`): ``pending`` (recorded in the audit trail) → ``sent`` (the broker confirmed the
publish) → ``acked`` | ``failed`` (the device answered) | ``timed_out`` (it did not, in time). The first final
state wins; a late ack still updates the device's state and is noted in the command's reason.

Everything here runs on the event loop's thread, so nothing is locked; timers and I/O live in the service.
Commands issued by this process are ``owned``: it times them out and records their outcome. Commands replayed
from the ``commands`` topic (another replica, or this one before a restart) are mirrors until adopted.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from telestack.core.commands import CommandEvent, CommandState

__all__ = ["TERMINAL_STATES", "CommandRecord", "CommandTracker", "DeviceStatus"]

TERMINAL_STATES: frozenset[str] = frozenset({"acked", "failed", "timed_out"})


@dataclass(eq=False)
class CommandRecord:
    id: str
    device: str
    command: str
    args: dict[str, Any]
    actor: str
    token_id: str
    created_ms: int
    timeout_s: float
    idempotency_key: str | None = None
    state: CommandState = "pending"
    sent_ms: int | None = None
    completed_ms: int | None = None
    reason: str | None = None
    device_state: dict[str, Any] = field(default_factory=dict)
    owned: bool = True
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def deadline_ms(self) -> int:
        return self.created_ms + int(self.timeout_s * 1000)

    def same_request(self, device: str, command: str, args: dict[str, Any]) -> bool:
        """Whether a retried request asks for the same thing (for idempotency keys)."""
        return (self.device, self.command, _canonical(self.args)) == (device, command, _canonical(args))


def _canonical(args: dict[str, Any]) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"))


@dataclass
class DeviceStatus:
    last_seen_ms: int | None = None
    state: dict[str, Any] = field(default_factory=dict)
    state_ms: int | None = None  # when `state` was reported; telemetry moves last_seen_ms but not this
    last_command_id: str | None = None


class CommandTracker:
    def __init__(self, history_ms: int) -> None:
        self.history_ms = history_ms
        self._commands: OrderedDict[str, CommandRecord] = OrderedDict()
        self._idempotency: dict[tuple[str, str], str] = {}
        self._devices: dict[str, DeviceStatus] = {}

    def __len__(self) -> int:
        return len(self._commands)

    # --- reading -------------------------------------------------------------------------------------------

    def get(self, command_id: str) -> CommandRecord | None:
        return self._commands.get(command_id)

    def by_idempotency_key(self, token_id: str, key: str) -> CommandRecord | None:
        command_id = self._idempotency.get((token_id, key))
        return None if command_id is None else self._commands.get(command_id)

    def device(self, device_id: str) -> DeviceStatus:
        return self._devices.get(device_id) or DeviceStatus()

    def last_command(self, device_id: str) -> CommandRecord | None:
        command_id = self.device(device_id).last_command_id
        return None if command_id is None else self._commands.get(command_id)

    def unfinished(self) -> list[CommandRecord]:
        return [record for record in self._commands.values() if not record.terminal]

    # --- changing ------------------------------------------------------------------------------------------

    def add(self, record: CommandRecord) -> None:
        self._commands[record.id] = record
        if record.idempotency_key is not None:
            self._idempotency[(record.token_id, record.idempotency_key)] = record.id
        status = self._devices.setdefault(record.device, DeviceStatus())
        last = self.last_command(record.device)
        if last is None or last.created_ms <= record.created_ms:
            status.last_command_id = record.id

    def forget_idempotency_key(self, record: CommandRecord) -> None:
        """Let a retry with the same key try again (the command never left)."""
        if record.idempotency_key is not None:
            key = (record.token_id, record.idempotency_key)
            if self._idempotency.get(key) == record.id:
                del self._idempotency[key]

    def mark_sent(self, record: CommandRecord, ts_ms: int) -> None:
        """The broker has it (PUBACK); a device may already have answered (its ack can overtake the PUBACK)."""
        if record.sent_ms is None:
            record.sent_ms = ts_ms
        if record.state == "pending":
            record.state = "sent"

    def finish(
        self,
        record: CommandRecord,
        state: CommandState,
        ts_ms: int,
        reason: str | None = None,
        device_state: dict[str, Any] | None = None,
    ) -> bool:
        """Move to a final state; False (and no change) if it already had one."""
        if record.terminal:
            return False
        record.state = state
        record.completed_ms = ts_ms
        record.reason = reason
        if device_state:
            record.device_state = dict(device_state)
        record.done.set()
        return True

    def seen(self, device_id: str, seen_ms: int) -> None:
        """The device said something (telemetry, status): it is alive."""
        status = self._devices.setdefault(device_id, DeviceStatus())
        if status.last_seen_ms is None or seen_ms > status.last_seen_ms:
            status.last_seen_ms = seen_ms

    def on_ack(
        self,
        device_id: str,
        command_id: str,
        ok: bool,
        reason: str | None,
        device_state: dict[str, Any],
        seen_ms: int,
    ) -> CommandRecord | None:
        """A device answered; returns the command if this ack finished it."""
        status = self._devices.setdefault(device_id, DeviceStatus())
        if status.last_seen_ms is None or seen_ms >= status.last_seen_ms:
            status.last_seen_ms = seen_ms
        # Compared with the last state report, not with last_seen: telemetry handled between this ack's arrival
        # and now must not make the device's newest state look stale.
        if device_state and (status.state_ms is None or seen_ms >= status.state_ms):
            status.state = dict(device_state)
            status.state_ms = seen_ms
        record = self._commands.get(command_id)
        if record is None or record.device != device_id:
            return None  # unknown here (older than the history), or another device's id: not this one's to move
        if record.terminal:
            if record.state == "timed_out" and record.reason and "answered" not in record.reason:
                late_s = (seen_ms - record.deadline_ms) / 1000
                record.reason += f"; the device answered {'ok' if ok else 'error'} {late_s:.1f} s after the deadline"
                record.device_state = dict(device_state)
            return None
        if ok:
            self.finish(record, "acked", seen_ms, None, device_state)
        else:
            self.finish(record, "failed", seen_ms, reason or "the device refused the command", device_state)
        return record

    def apply_event(
        self, event: CommandEvent, *, idempotency_key: str | None, token_id: str | None, timeout_s: float | None
    ) -> CommandRecord | None:
        """Mirror a ``command`` or ``outcome`` event read from the commands topic (acks go to `on_ack`).

        Returns the record the event created or finished, if any.
        """
        record = self._commands.get(event.command_id)
        if event.type == "command":
            if record is not None:
                return None
            record = CommandRecord(
                id=event.command_id,
                device=event.device,
                command=event.command or "",
                args=dict(event.args),
                actor=event.actor or "",
                token_id=token_id or "",
                created_ms=event.ts_ms,
                timeout_s=timeout_s or 0.0,
                idempotency_key=idempotency_key,
                owned=False,
            )
            self.add(record)
            return record
        if (
            event.type == "outcome"
            and record is not None
            and not record.owned
            and event.state in TERMINAL_STATES
            and self.finish(record, event.state, event.ts_ms, event.reason, event.device_state)
        ):
            return record
        return None

    def prune(self, now_ms: int) -> int:
        """Forget final commands older than the history; returns how many."""
        horizon = now_ms - self.history_ms
        dropped = 0
        for command_id, record in list(self._commands.items()):
            if record.created_ms >= horizon:
                break
            if not record.terminal:
                continue
            del self._commands[command_id]
            if record.idempotency_key is not None:
                self._idempotency.pop((record.token_id, record.idempotency_key), None)
            dropped += 1
        return dropped

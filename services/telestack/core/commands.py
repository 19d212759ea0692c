"""The device command protocol shared by the actuator, the MQTT bridge and the device simulators.

    actuator ──MQTT──► devices/{device}/cmd   DeviceCommand   {"id", "command", "args", "ts_ms"}
    device   ──MQTT──► devices/{device}/ack   DeviceAck       {"id", "status": "ok"|"error", "reason", "state", "ts_ms"}
    mqtt-bridge forwards each DeviceAck to Kafka `commands` as a CommandEvent of type "ack".
    actuator records each command and its outcome in Kafka `commands` (the audit trail), key = device id.

Topics are per-device templates in the device registry; the defaults are above.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_ACK_TOPIC",
    "DEFAULT_COMMAND_TOPIC",
    "CommandEvent",
    "CommandState",
    "DeviceAck",
    "DeviceCommand",
]

DEFAULT_COMMAND_TOPIC = "devices/{device}/cmd"
DEFAULT_ACK_TOPIC = "devices/{device}/ack"

CommandState = Literal["pending", "sent", "acked", "failed", "timed_out"]


class DeviceCommand(BaseModel):
    """What a device receives on its command topic."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="command id; the device echoes it in its ack")
    command: str = Field(description="e.g. on, off, toggle, set_setpoint")
    args: dict[str, Any] = Field(default_factory=dict)
    ts_ms: int = Field(description="when the command was issued, ms since the epoch")


class DeviceAck(BaseModel):
    """What a device publishes on its ack topic after executing (or refusing) a command."""

    model_config = ConfigDict(extra="ignore")  # devices may add their own fields

    id: str
    status: Literal["ok", "error"]
    reason: str | None = None
    state: dict[str, Any] = Field(default_factory=dict, description="device state after the command")
    ts_ms: int | None = None


class CommandEvent(BaseModel):
    """One record of Kafka `commands`: a command issued, a device ack, or a final outcome."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["command", "ack", "outcome"]
    command_id: str
    device: str
    ts_ms: int = Field(description="when this event happened, ms since the epoch")
    command: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    state: CommandState | None = None
    status: Literal["ok", "error"] | None = None
    reason: str | None = None
    actor: str | None = Field(None, description="who asked (token name), for the audit trail")
    device_state: dict[str, Any] = Field(default_factory=dict)

"""The JSON bodies of the actuator's HTTP API (requests, responses, errors), with OpenAPI examples."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from telestack.actuator.registry import ArgSpec, Registry
from telestack.actuator.tracker import CommandRecord, DeviceStatus
from telestack.core.commands import CommandState

__all__ = [
    "CheckResult",
    "CommandInfo",
    "CommandRequest",
    "CommandStatus",
    "DeviceList",
    "DeviceView",
    "ErrorBody",
    "ErrorItem",
    "Health",
    "IngestAccepted",
    "command_status",
    "device_view",
    "error_responses",
]


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description="where: body, query, header, path, then the field (or line number)")
    msg: str
    line: int | None = Field(None, description="line number (line protocol ingest)")


class ErrorBody(BaseModel):
    """Every error response has this shape."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": "invalid 'set_setpoint' command for 'f1': celsius=45 is above the maximum 30 °C",
                    "errors": [{"loc": ["body", "args", "celsius"], "msg": "celsius=45 is above the maximum 30 °C"}],
                }
            ]
        }
    )

    detail: str = Field(description="what went wrong, for a person")
    errors: list[ErrorItem] = Field(default_factory=list, description="each problem found, when there are several")


_ERROR_DESCRIPTIONS = {
    400: "the body cannot be read (not UTF-8 JSON), or (ingest) invalid lines or points, each listed with "
    "its line number; nothing was accepted",
    401: "no bearer token, or an unknown, revoked or expired one",
    403: "the token lacks the scope for this device, site or operation (ingest: or for a measurement or device)",
    404: "unknown device or command",
    409: "the Idempotency-Key was used for a different request",
    413: "the body is too large (as sent or decompressed), has too many lines, or a point too many fields",
    415: "unsupported content type or encoding",
    422: "the request does not validate: unknown command or argument, wrong type, value out of bounds",
    429: "the token is over its rate limit; retry after Retry-After seconds",
    503: "Kafka or the MQTT broker did not confirm in time; nothing was accepted",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route's error statuses: an `ErrorBody` each, with their headers."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[status]}
        if status == 429:
            response["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
        responses[status] = response
    return responses


class CommandRequest(BaseModel):
    """A command for one device; the device's type says which commands and arguments exist."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"command": "on"}, {"command": "set_setpoint", "args": {"celsius": 18.5}}]},
    )

    command: str = Field(min_length=1, max_length=64, description="a command of the device's type (GET /v1/devices)")
    args: dict[str, Any] = Field(
        default_factory=dict, description="the command's arguments, checked against their bounds"
    )


class CommandStatus(BaseModel):
    """A command and where it stands."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "6f1c2b0e9d7a4c55b1f0e2d3c4b5a697",
                    "device": "plug-1",
                    "command": "on",
                    "args": {},
                    "state": "acked",
                    "actor": "grafana-button",
                    "created_at": "2024-05-01T12:00:00.000Z",
                    "sent_at": "2024-05-01T12:00:00.004Z",
                    "completed_at": "2024-05-01T12:00:00.051Z",
                    "deadline_at": "2024-05-01T12:00:10.000Z",
                    "reason": None,
                    "device_state": {"relay": True},
                    "idempotency_key": "grafana-3f9a",
                }
            ]
        }
    )

    id: str
    device: str
    command: str
    args: dict[str, Any]
    state: CommandState = Field(
        description="pending: recorded; sent: the broker has it; acked/failed: the device answered; "
        "timed_out: it did not, in time"
    )
    actor: str = Field(description="name of the token that issued it")
    created_at: datetime
    sent_at: datetime | None = None
    completed_at: datetime | None = None
    deadline_at: datetime = Field(description="when it times out without an ack")
    reason: str | None = Field(None, description="why it failed or timed out")
    device_state: dict[str, Any] = Field(default_factory=dict, description="the state the device reported in its ack")
    idempotency_key: str | None = None


def command_status(record: CommandRecord) -> CommandStatus:
    return CommandStatus(
        id=record.id,
        device=record.device,
        command=record.command,
        args=record.args,
        state=record.state,
        actor=record.actor,
        created_at=_time(record.created_ms),
        sent_at=_time(record.sent_ms),
        completed_at=_time(record.completed_ms),
        deadline_at=_time(record.deadline_ms),
        reason=record.reason,
        device_state=record.device_state,
        idempotency_key=record.idempotency_key,
    )


class CommandInfo(BaseModel):
    description: str = ""
    args: dict[str, ArgSpec] = Field(default_factory=dict)
    timeout_s: float


class DeviceView(BaseModel):
    """A device, what it last said, and what it accepts."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "f1",
                    "type": "fermenter",
                    "site": "brewery",
                    "description": "fermenter 1",
                    "last_seen": "2024-05-01T12:00:00.051Z",
                    "state": {"setpoint": 18.5, "temperature": 18.7},
                    "last_command": None,
                    "can_command": True,
                    "commands": {
                        "set_setpoint": {
                            "description": "target temperature",
                            "args": {"celsius": {"type": "number", "min": -2, "max": 30, "unit": "°C"}},
                            "timeout_s": 10.0,
                        }
                    },
                }
            ]
        }
    )

    id: str
    type: str
    site: str
    description: str = ""
    last_seen: datetime | None = Field(
        None, description="when the device last spoke: an ack, or a live message on its type's seen_topics"
    )
    state: dict[str, Any] = Field(default_factory=dict, description="the state in its last ack")
    last_command: CommandStatus | None = None
    can_command: bool = Field(description="whether the calling token may command it")
    commands: dict[str, CommandInfo]


def device_view(
    registry: Registry,
    device_id: str,
    status: DeviceStatus,
    last_command: CommandRecord | None,
    *,
    can_command: bool,
    default_timeout_s: float,
) -> DeviceView:
    device = registry.device(device_id)
    device_type = registry.types[device.type]
    return DeviceView(
        id=device.id,
        type=device.type,
        site=device.site,
        description=device.description,
        last_seen=_time(status.last_seen_ms),
        state=status.state,
        last_command=None if last_command is None else command_status(last_command),
        can_command=can_command,
        commands={
            name: CommandInfo(
                description=spec.description,
                args=spec.args,
                timeout_s=spec.timeout_s if spec.timeout_s is not None else default_timeout_s,
            )
            for name, spec in device_type.commands.items()
        },
    )


class DeviceList(BaseModel):
    devices: list[DeviceView]


class IngestAccepted(BaseModel):
    """Every point was checked and Kafka confirmed every record."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"site": "hq", "points": 240, "records": 3}]})

    site: str = Field(description="the site the points were tagged with (the token's)")
    points: int = Field(description="points accepted")
    records: int = Field(description="Kafka records written (lines grouped per device)")


class CheckResult(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "checks": {
                        "mqtt": {"ok": True, "detail": "connected"},
                        "kafka": {"ok": True, "detail": "0 records in flight"},
                    },
                }
            ]
        }
    )

    status: Literal["ok", "failing"]
    checks: dict[str, CheckResult]

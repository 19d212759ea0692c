"""Device acknowledgements of commands → `CommandEvent` records of Kafka ``commands`` (pure functions).

A device answers each `DeviceCommand` on its ack topic (``devices/{device}/ack`` by default, see
`telestack.core.commands`) with a `DeviceAck`; the bridge forwards it, keyed by device id, for the actuator.

>>> route = AckRoute.parse("devices/{device}/ack")
>>> device = route.device("devices/plug-1/ack")
>>> event = ack_event(device, b'{"id": "c1", "status": "ok", "state": {"relay": true}}', 1_700_000_000_000)
>>> event.type, event.command_id, event.device, event.state, event.device_state
('ack', 'c1', 'plug-1', 'acked', {'relay': True})
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from telestack.core.commands import CommandEvent, DeviceAck
from telestack.mqtt_bridge.errors import MappingError
from telestack.mqtt_bridge.rules import TopicFilter

__all__ = ["AckRoute", "ack_event", "ack_record"]


@dataclass(frozen=True, slots=True)
class AckRoute:
    """The ack topic pattern; its ``{device}`` level names the device."""

    filter: TopicFilter

    @classmethod
    def parse(cls, pattern: str) -> AckRoute:
        topic_filter = TopicFilter.parse(pattern)
        if "device" not in topic_filter.names:
            raise ValueError(f"ack topic {pattern!r} must have a {{device}} level")
        return cls(topic_filter)

    @property
    def subscription(self) -> str:
        return self.filter.subscription

    def device(self, topic: str) -> str | None:
        """The device id if `topic` is an ack topic, else None."""
        values = self.filter.match(topic)
        return None if values is None else values["device"]


def ack_event(device: str, payload: bytes, arrival_ms: int) -> CommandEvent:
    """The `CommandEvent` (type ``ack``) for a device's ack; `MappingError` (invalid_ack) if it is not one."""
    try:
        ack = DeviceAck.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise MappingError("invalid_ack", f"not a device ack: {where}: {first['msg']}") from None
    return CommandEvent(
        type="ack",
        command_id=ack.id,
        device=device,
        ts_ms=ack.ts_ms if ack.ts_ms is not None else arrival_ms,
        state="acked" if ack.status == "ok" else "failed",
        status=ack.status,
        reason=ack.reason,
        device_state=ack.state,
    )


def ack_record(device: str, payload: bytes, arrival_ms: int) -> str:
    """The JSON value of the ``commands`` record for a device's ack."""
    return ack_event(device, payload, arrival_ms).model_dump_json(exclude_none=True)

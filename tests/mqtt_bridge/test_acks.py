"""Device command acks → CommandEvent JSON for Kafka `commands`."""

from __future__ import annotations

import pytest

from telestack.core.commands import DEFAULT_ACK_TOPIC, CommandEvent
from telestack.mqtt_bridge.acks import AckRoute, ack_event, ack_record
from telestack.mqtt_bridge.errors import MappingError


def test_default_ack_topic_names_the_device() -> None:
    route = AckRoute.parse(DEFAULT_ACK_TOPIC)
    assert route.subscription == "devices/+/ack"
    assert route.device("devices/fermenter-f1/ack") == "fermenter-f1"
    assert route.device("devices/fermenter-f1/cmd") is None


def test_ack_pattern_needs_a_device_level() -> None:
    with pytest.raises(ValueError, match="device"):
        AckRoute.parse("acks/+")


def test_error_ack_becomes_a_failed_event_with_the_reason() -> None:
    payload = b'{"id": "c9", "status": "error", "reason": "setpoint out of range", "ts_ms": 1700000000000, "extra": 1}'
    event = ack_event("f1", payload, 1_800_000_000_000)
    assert event == CommandEvent(
        type="ack",
        command_id="c9",
        device="f1",
        ts_ms=1_700_000_000_000,  # the device's time when it gives one
        state="failed",
        status="error",
        reason="setpoint out of range",
    )


def test_ack_record_is_command_event_json() -> None:
    value = ack_record("plug-1", b'{"id": "c1", "status": "ok", "state": {"relay": true}}', 1_700_000_000_000)
    event = CommandEvent.model_validate_json(value)
    assert (event.type, event.command_id, event.ts_ms, event.device_state) == (
        "ack",
        "c1",
        1_700_000_000_000,
        {"relay": True},
    )


@pytest.mark.parametrize("payload", [b"not json", b'{"status": "ok"}', b'{"id": "c", "status": "maybe"}', b"[]"])
def test_invalid_acks_are_refused(payload: bytes) -> None:
    with pytest.raises(MappingError) as err:
        ack_event("d", payload, 0)
    assert err.value.reason == "invalid_ack"

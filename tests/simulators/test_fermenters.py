"""The fermenter simulator: STC-1000 payloads, a thermostat with hysteresis, inertia after a new setpoint."""

from __future__ import annotations

import itertools
import random

import pytest

from telestack.mqtt_bridge.mapping import map_message
from telestack.mqtt_bridge.rules import RuleSet
from telestack.simulators.fermenters import HYSTERESIS, Fermenter
from telestack.simulators.mqtt_device import CommandRefused


def _fermenter(rate_per_min: float = 6.0) -> Fermenter:
    return Fermenter("f1", random.Random(7), setpoint=18.0, rate_per_min=rate_per_min)


def test_publishes_stc1000esp_topics_and_formats() -> None:
    fermenter = _fermenter()
    messages = {topic: payload for topic, payload, _ in fermenter.messages()}
    assert set(messages) == {
        "fermenters/f1/temperature",
        "fermenters/f1/setpoint",
        "fermenters/f1/heating",
        "fermenters/f1/cooling",
    }
    assert messages["fermenters/f1/setpoint"] == "18.0"
    assert messages["fermenters/f1/cooling"] in ("true", "false")
    assert fermenter.will() == ("fermenters/f1/status", "offline", True)
    assert fermenter.on_connect_messages() == [("fermenters/f1/status", "online", True)]


def test_messages_map_with_the_shipped_rules(shipped_rules: RuleSet) -> None:
    fermenter = _fermenter()
    for topic, payload, _ in [*fermenter.messages(), *fermenter.on_connect_messages()]:
        mapped = map_message(shipped_rules, topic, payload.encode(), 1)
        assert mapped.rule == "fermenter-stc1000"
        assert mapped.key == "f1"


def test_new_setpoint_is_followed_with_inertia() -> None:
    fermenter = _fermenter(rate_per_min=6.0)  # 0.1 °C/s
    start = fermenter.temperature
    fermenter.execute("set_setpoint", {"celsius": 4.0})
    assert fermenter.setpoint == 4.0
    assert fermenter.cooling and not fermenter.heating
    assert fermenter.temperature == start  # no jump

    temperatures = []
    for _ in range(60):
        fermenter.advance(1.0)
        temperatures.append(fermenter.temperature)
    # Cooling at ~0.1 °C/s: about 6 °C in a minute, steadily, not all at once.
    assert 4.5 < start - temperatures[-1] < 7.5
    assert all(b < a + 0.05 for a, b in itertools.pairwise(temperatures))

    for _ in range(600):
        fermenter.advance(1.0)
    assert abs(fermenter.temperature - 4.0) <= HYSTERESIS + 0.1  # holds the setpoint


def test_heating_when_the_setpoint_goes_up() -> None:
    fermenter = _fermenter()
    fermenter.execute("set_setpoint", {"celsius": 22})
    assert fermenter.heating and not fermenter.cooling
    fermenter.advance(10)
    assert fermenter.temperature > 18.5


@pytest.mark.parametrize(
    ("command", "args", "reason"),
    [
        ("set_setpoint", {"celsius": 99}, "outside"),
        ("set_setpoint", {"celsius": "cold"}, "needs a number"),
        ("set_setpoint", {}, "needs a number"),
        ("open_valve", {}, "unknown command"),
    ],
)
def test_refused_commands_leave_the_setpoint(command: str, args: dict[str, object], reason: str) -> None:
    fermenter = _fermenter()
    with pytest.raises(CommandRefused, match=reason):
        fermenter.execute(command, args)
    assert fermenter.setpoint == 18.0


def test_state_for_acks() -> None:
    state = _fermenter().state()
    assert set(state) == {"setpoint", "temperature", "cooling", "heating"}

"""The smart-plug simulator: myStrom reports, and a relay that obeys on, off and toggle."""

from __future__ import annotations

import json
import random

import pytest

from telestack.mqtt_bridge.mapping import map_message
from telestack.mqtt_bridge.rules import RuleSet
from telestack.simulators.mqtt_device import CommandRefused
from telestack.simulators.smart_plug import SmartPlug


def _plug() -> SmartPlug:
    return SmartPlug("plug-1", random.Random(3), load_w=60.0)


def test_report_is_mystrom_json() -> None:
    plug = _plug()
    plug.advance(5)
    ((topic, payload, retain),) = plug.messages()
    report = json.loads(payload)
    assert topic == "plugs/plug-1/report" and not retain
    assert set(report) == {"power", "Ws", "relay", "temperature", "boot_id", "energy_since_boot", "time_since_boot"}
    assert report["relay"] is True and 50 < report["power"] < 70


def test_report_maps_with_the_shipped_rules(shipped_rules: RuleSet) -> None:
    ((topic, payload, _),) = _plug().messages()
    mapped = map_message(shipped_rules, topic, payload.encode(), 1)
    assert (mapped.rule, mapped.key) == ("plug-mystrom", "plug-1")
    assert "relay=true" in mapped.value


def test_on_off_toggle() -> None:
    plug = _plug()
    plug.execute("off", {})
    assert plug.state() == {"relay": False, "power_w": 0.0}
    plug.execute("toggle", {})
    assert plug.relay and plug.state()["power_w"] > 0
    plug.execute("on", {})
    assert plug.relay
    plug.execute("toggle", {})
    assert not plug.relay


def test_energy_accumulates_only_while_on() -> None:
    plug = _plug()
    plug.advance(10)
    energy = plug.energy_ws
    assert 500 < energy < 700  # ~60 W for 10 s
    plug.execute("off", {})
    plug.advance(10)
    assert plug.energy_ws == energy


@pytest.mark.parametrize(("command", "args"), [("dim", {}), ("on", {"level": 3})])
def test_refused_commands(command: str, args: dict[str, object]) -> None:
    plug = _plug()
    with pytest.raises(CommandRefused):
        plug.execute(command, args)
    assert plug.relay

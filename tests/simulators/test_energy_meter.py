"""The energy-meter simulator: Eco-devices teleinfo JSON whose index integrates the apparent power."""

from __future__ import annotations

import json
import random

import pytest

from telestack.mqtt_bridge.mapping import map_message
from telestack.mqtt_bridge.rules import RuleSet
from telestack.simulators.energy_meter import EnergyMeter
from telestack.simulators.mqtt_device import CommandRefused

NOON = 1_700_000_000.0 + 12 * 3600  # the clock only sets the hour of the daily profile


def _meter() -> EnergyMeter:
    return EnergyMeter("compteur-1", random.Random(11), clock=lambda: NOON)


def test_reading_has_the_seed_keys_and_types() -> None:
    ((topic, payload, _),) = _meter().messages()
    reading = json.loads(payload)
    assert topic == "teleinfo/compteur-1"
    assert list(reading) == [
        "product",
        "T1_PTEC",
        "T1_PAPP",
        "T1_BASE",
        "T2_PTEC",
        "T2_PAPP",
        "T2_BASE",
        "INDEX_C1",
        "INDEX_C2",
    ]
    assert reading["product"] == "Eco-devices" and reading["T1_PTEC"] == "TH.."
    assert all(isinstance(reading[key], int) for key in ("T1_PAPP", "T1_BASE", "INDEX_C1", "INDEX_C2"))


def test_reading_maps_with_the_shipped_rules(shipped_rules: RuleSet) -> None:
    ((topic, payload, _),) = _meter().messages()
    mapped = map_message(shipped_rules, topic, payload.encode(), 1)
    assert (mapped.rule, mapped.key) == ("teleinfo-ecodevices", "compteur-1")
    assert "product=Eco-devices" in mapped.value and "T1_BASE=" in mapped.value


def test_index_integrates_power_and_counters_only_grow() -> None:
    meter = _meter()
    start_index, start_water, start_gas = meter.index_wh, meter.water_l, meter.gas
    energy = 0.0
    for _ in range(360):  # one hour in 10 s steps
        meter.advance(10)
        energy += meter.papp * 10 / 3600
        assert meter.papp >= 0
    assert meter.index_wh - start_index == pytest.approx(energy, abs=1)
    assert meter.index_wh - start_index > 100  # at least the base load for an hour
    assert meter.water_l >= start_water and meter.gas >= start_gas


def test_only_read_is_accepted() -> None:
    meter = _meter()
    meter.execute("read", {})
    with pytest.raises(CommandRefused, match="only accepts read"):
        meter.execute("reset", {})
    assert set(meter.state()) == {"papp_va", "index_wh"}

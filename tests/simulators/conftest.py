"""Fixtures of the simulator tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from telestack.mqtt_bridge.rules import RuleSet, load_rules

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shipped_rules() -> RuleSet:
    """The bridge's shipped rules: what the simulators publish must map without a dead letter."""
    return load_rules(REPO / "config" / "mqtt-bridge.yaml")

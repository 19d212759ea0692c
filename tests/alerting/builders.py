"""Small builders shared by the alerting tests."""

from __future__ import annotations

from telestack.alerting.engine import AlertEngine
from telestack.alerting.rules import parse_rules
from telestack.core.lineproto import FieldValue, Point

NS = 1_000_000_000
T0 = 1_700_000_000 * NS  # an arbitrary epoch for unit tests


def at(seconds: float) -> int:
    """T0 + `seconds`, in ns."""
    return T0 + int(seconds * NS)


def point(measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], seconds: float) -> Point:
    return Point(measurement, tags, fields, at(seconds))


def engine(yaml_text: str) -> AlertEngine:
    return AlertEngine(parse_rules(yaml_text, "test.yaml"))


def fermenter(device: str, seconds: float, temperature: float | None = None, setpoint: float | None = None) -> Point:
    fields: dict[str, FieldValue] = {}
    if temperature is not None:
        fields["temperature"] = temperature
    if setpoint is not None:
        fields["setpoint"] = setpoint
    return point("fermenter", {"device": device}, fields, seconds)

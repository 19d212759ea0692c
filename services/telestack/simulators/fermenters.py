"""``telestack simulate fermenters``: STC-1000 thermostats (seed 000) on fermenters, over MQTT.

Each fermenter publishes like the brewery's stc1000esp firmware: plain values under ``fermenters/<id>/``:
``temperature`` and ``setpoint`` (``%.1f`` °C), ``heating`` and ``cooling`` (``true``/``false``), and a
retained ``status`` (``online``, last will ``offline``). The thermostat switches cooling on above the
setpoint plus its hysteresis and heating below it minus the hysteresis; the temperature moves at ``--rate``
°C/min while one of them runs and drifts toward the cellar's temperature otherwise, so after a new
setpoint the temperature follows with inertia.

Commands (`telestack.core.commands`): ``set_setpoint`` with ``{"celsius": 4.0}``; the ack's state holds
``setpoint``, ``temperature``, ``cooling`` and ``heating``.
"""

from __future__ import annotations

import argparse
import math
import random
from typing import Any

from telestack.simulators.mqtt_device import CommandRefused, Message, SimulatedDevice, add_device_arguments, run_fleet

__all__ = ["Fermenter", "configure", "run"]

SETPOINT_RANGE = (-5.0, 40.0)  # what the thermostat accepts, °C
HYSTERESIS = 0.3  # °C either side of the setpoint before cooling or heating starts
DRIFT_TAU_S = 4 * 3600.0  # time constant of the drift toward the cellar when idle, s
FERMENTATION_HEAT = 0.2 / 3600  # yeast warms the wort a little, °C/s


class Fermenter(SimulatedDevice):
    """A fermenter under an STC-1000: temperature, setpoint, cooling and heating."""

    kind = "fermenter"

    def __init__(
        self,
        device_id: str,
        rng: random.Random,
        *,
        setpoint: float = 18.0,
        rate_per_min: float = 0.5,
        prefix: str = "fermenters",
    ) -> None:
        super().__init__(device_id, rng)
        self.setpoint = setpoint
        self.temperature = round(setpoint + rng.uniform(-0.2, 0.2), 2)
        self.cellar = 20.0 + rng.uniform(-1.5, 1.5)
        self.rate_per_s = rate_per_min / 60
        self.cooling = False
        self.heating = False
        self.topic = f"{prefix}/{device_id}"

    def _thermostat(self) -> None:
        if self.temperature > self.setpoint + HYSTERESIS:
            self.cooling, self.heating = True, False
        elif self.temperature < self.setpoint - HYSTERESIS:
            self.cooling, self.heating = False, True
        elif (self.cooling and self.temperature <= self.setpoint) or (
            self.heating and self.temperature >= self.setpoint
        ):
            self.cooling = self.heating = False

    def advance(self, dt_s: float) -> None:
        if dt_s <= 0:
            self._thermostat()
            return
        if self.cooling:
            change = -self.rate_per_s * dt_s
        elif self.heating:
            change = self.rate_per_s * dt_s
        else:
            change = (self.cellar - self.temperature) * (1 - math.exp(-dt_s / DRIFT_TAU_S))
        change += FERMENTATION_HEAT * dt_s + self.rng.gauss(0, 0.01)
        self.temperature += change
        self._thermostat()

    def messages(self) -> list[Message]:
        return [
            (f"{self.topic}/temperature", f"{self.temperature:.1f}", False),
            (f"{self.topic}/setpoint", f"{self.setpoint:.1f}", False),
            (f"{self.topic}/heating", "true" if self.heating else "false", False),
            (f"{self.topic}/cooling", "true" if self.cooling else "false", False),
        ]

    def execute(self, command: str, args: dict[str, Any]) -> None:
        if command != "set_setpoint":
            raise CommandRefused(f"unknown command {command!r}; a fermenter accepts set_setpoint")
        value = args.get("celsius", args.get("setpoint"))
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise CommandRefused('set_setpoint needs a number: {"celsius": 4.0}')
        low, high = SETPOINT_RANGE
        if not low <= value <= high:
            raise CommandRefused(f"setpoint {value} °C is outside {low:g}..{high:g} °C")
        self.setpoint = round(float(value), 1)
        self._thermostat()

    def state(self) -> dict[str, Any]:
        return {
            "setpoint": self.setpoint,
            "temperature": round(self.temperature, 2),
            "cooling": self.cooling,
            "heating": self.heating,
        }

    def will(self) -> Message:
        return (f"{self.topic}/status", "offline", True)

    def on_connect_messages(self) -> list[Message]:
        return [(f"{self.topic}/status", "online", True)]


def configure(parser: argparse.ArgumentParser) -> None:
    add_device_arguments(parser, devices="f1,f2,f3", interval_s=5, what="fermenter")
    group = parser.add_argument_group("fermenters")
    group.add_argument("--setpoint", type=float, default=18.0, help="initial setpoint, °C (default: 18)")
    group.add_argument(
        "--rate",
        type=float,
        default=0.5,
        help="°C per minute the cooling or heating moves the temperature (default: 0.5; a real tank: ~0.05)",
    )
    group.add_argument("--prefix", default="fermenters", help="topic prefix (default: fermenters)")


def run(args: argparse.Namespace) -> int:
    return run_fleet(
        args,
        "fermenters",
        lambda device_id, rng: Fermenter(
            device_id, rng, setpoint=args.setpoint, rate_per_min=args.rate, prefix=args.prefix
        ),
    )

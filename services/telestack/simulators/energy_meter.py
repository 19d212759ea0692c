"""``telestack simulate energy-meter``: an electricity meter read by an Eco-devices gateway (seed 002), over MQTT.

Each meter publishes the gateway's teleinfo JSON on ``teleinfo/<id>``, as the energy lab's client did::

    {"product": "Eco-devices", "T1_PTEC": "TH..", "T1_PAPP": 130, "T1_BASE": 1875395,
     "T2_PTEC": "----", "T2_PAPP": 0, "T2_BASE": 0, "INDEX_C1": 784482, "INDEX_C2": 10818}

``T1_PAPP`` is the apparent power (VA) of a household: a base load, a fridge cycling, an evening peak and
now and then a kettle or an oven; ``T1_BASE`` the energy index (Wh) it integrates to; ``T1_PTEC`` the
tariff period (``TH..``: base option). ``T2_*`` is the absent second meter input; ``INDEX_C1`` and
``INDEX_C2`` are the gateway's pulse counters (water in litres, gas in 10 L steps).

Commands (`telestack.core.commands`): ``read`` publishes a reading at once; a meter accepts nothing else.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from typing import Any

from telestack.simulators.mqtt_device import CommandRefused, Message, SimulatedDevice, add_device_arguments, run_fleet

__all__ = ["EnergyMeter", "configure", "run"]


class EnergyMeter(SimulatedDevice):
    """A household meter behind an Eco-devices gateway."""

    kind = "meter"

    def __init__(
        self,
        device_id: str,
        rng: random.Random,
        *,
        base_load_va: float = 130.0,
        prefix: str = "teleinfo",
        clock: Any = time.time,
    ) -> None:
        super().__init__(device_id, rng)
        self.base_load_va = base_load_va
        self.clock = clock
        self.index_wh = 1_875_395 + rng.randrange(0, 100_000)
        self._wh_fraction = 0.0
        self.water_l = 784_482 + rng.randrange(0, 10_000)
        self.gas = 10_818 + rng.randrange(0, 1_000)
        self.fridge_on = False
        self.appliance_s = 0.0  # seconds left of a kettle or oven run
        self.appliance_va = 0.0
        self.topic = f"{prefix}/{device_id}"
        self.papp = self._apparent_power()

    def _apparent_power(self) -> int:
        hour = time.localtime(self.clock()).tm_hour
        evening = 350 if 18 <= hour < 22 else (120 if 7 <= hour < 9 else 0)
        va = self.base_load_va + evening + (95 if self.fridge_on else 0) + self.appliance_va
        return max(0, round(va * (1 + self.rng.gauss(0, 0.03))))

    def advance(self, dt_s: float) -> None:
        if dt_s <= 0:
            return
        # The fridge's compressor runs about a third of the time, in cycles of some minutes.
        if self.rng.random() < 1 - math.exp(-dt_s / (600 if self.fridge_on else 1200)):
            self.fridge_on = not self.fridge_on
        if self.appliance_s > 0:
            self.appliance_s -= dt_s
            if self.appliance_s <= 0:
                self.appliance_va = 0.0
        elif self.rng.random() < 1 - math.exp(-dt_s / 3600):
            self.appliance_va, self.appliance_s = self.rng.choice([(2000.0, 180.0), (2600.0, 1500.0), (1200.0, 900.0)])
        self.papp = self._apparent_power()
        self._wh_fraction += self.papp * dt_s / 3600  # VA taken as W: cos φ close to 1 for a household
        whole = int(self._wh_fraction)
        self.index_wh += whole
        self._wh_fraction -= whole
        if self.rng.random() < 1 - math.exp(-dt_s / 300):
            self.water_l += self.rng.randint(1, 12)
        if self.rng.random() < 1 - math.exp(-dt_s / 900):
            self.gas += 1

    def messages(self) -> list[Message]:
        reading = (
            f'{{"product": "Eco-devices", "T1_PTEC": "TH..", "T1_PAPP": {self.papp}, "T1_BASE": {self.index_wh}, '
            f'"T2_PTEC": "----", "T2_PAPP": 0, "T2_BASE": 0, "INDEX_C1": {self.water_l}, "INDEX_C2": {self.gas}}}'
        )
        return [(self.topic, reading, False)]

    def execute(self, command: str, args: dict[str, Any]) -> None:
        if command != "read":
            raise CommandRefused(f"unknown command {command!r}; a meter only accepts read")

    def state(self) -> dict[str, Any]:
        return {"papp_va": self.papp, "index_wh": self.index_wh}


def configure(parser: argparse.ArgumentParser) -> None:
    add_device_arguments(parser, devices="compteur-1", interval_s=10, what="meter")
    group = parser.add_argument_group("energy meter")
    group.add_argument("--base-load", type=float, default=130.0, help="always-on load, VA (default: 130)")
    group.add_argument("--prefix", default="teleinfo", help="topic prefix (default: teleinfo)")


def run(args: argparse.Namespace) -> int:
    return run_fleet(
        args,
        "energy-meter",
        lambda device_id, rng: EnergyMeter(device_id, rng, base_load_va=args.base_load, prefix=args.prefix),
    )

"""``telestack simulate smart-plug``: myStrom-style smart plugs (seed 003), over MQTT.

Each plug publishes its ``/report`` JSON on ``plugs/<id>/report``, as the lab's plug_2_mqtt bridge did::

    {"power": 41.23, "Ws": 40.87, "relay": true, "temperature": 23.4, "boot_id": "3F9A2C1B",
     "energy_since_boot": 1234.5, "time_since_boot": 3600}

``power`` is the load's draw in W while the relay is closed (0 when open), ``Ws`` the mean power over the
last interval, ``temperature`` the plug's own, a little warmer under load; ``energy_since_boot`` in Ws.

Commands (`telestack.core.commands`): ``on``, ``off`` and ``toggle``; the ack's state holds ``relay`` and
``power_w``.
"""

from __future__ import annotations

import argparse
import random
from typing import Any

from telestack.simulators.mqtt_device import CommandRefused, Message, SimulatedDevice, add_device_arguments, run_fleet

__all__ = ["SmartPlug", "configure", "run"]


class SmartPlug(SimulatedDevice):
    """A plug with a relay, a load behind it, and a power meter."""

    kind = "plug"

    def __init__(
        self, device_id: str, rng: random.Random, *, load_w: float = 60.0, relay: bool = True, prefix: str = "plugs"
    ) -> None:
        super().__init__(device_id, rng)
        self.load_w = load_w
        self.relay = relay
        self.power = 0.0
        self.mean_power = 0.0
        self.temperature = 22.0 + rng.uniform(-1, 1)
        self.energy_ws = 0.0
        self.uptime_s = 0.0
        self.boot_id = f"{rng.getrandbits(32):08X}"
        self.topic = f"{prefix}/{device_id}/report"
        self._measure()

    def _measure(self) -> None:
        self.power = max(0.0, self.load_w * (1 + self.rng.gauss(0, 0.02))) if self.relay else 0.0

    def advance(self, dt_s: float) -> None:
        before = self.power
        self._measure()
        self.mean_power = (before + self.power) / 2 if dt_s > 0 else self.power
        self.energy_ws += self.mean_power * dt_s
        self.uptime_s += dt_s
        ambient = 22.0 + self.power * 0.02  # the relay and shunt warm the case under load
        self.temperature += (ambient - self.temperature) * min(1.0, dt_s / 600) + self.rng.gauss(0, 0.02)

    def messages(self) -> list[Message]:
        report = (
            f'{{"power": {self.power:.2f}, "Ws": {self.mean_power:.2f}, "relay": {"true" if self.relay else "false"}, '
            f'"temperature": {self.temperature:.2f}, "boot_id": "{self.boot_id}", '
            f'"energy_since_boot": {self.energy_ws:.1f}, "time_since_boot": {int(self.uptime_s)}}}'
        )
        return [(self.topic, report, False)]

    def execute(self, command: str, args: dict[str, Any]) -> None:
        if command not in ("on", "off", "toggle"):
            raise CommandRefused(f"unknown command {command!r}; a plug accepts on, off and toggle")
        if args:
            raise CommandRefused(f"{command} takes no arguments, got {', '.join(sorted(args))}")
        self.relay = (not self.relay) if command == "toggle" else command == "on"
        self._measure()
        self.mean_power = self.power

    def state(self) -> dict[str, Any]:
        return {"relay": self.relay, "power_w": round(self.power, 2)}


def configure(parser: argparse.ArgumentParser) -> None:
    add_device_arguments(parser, devices="plug-1", interval_s=5, what="plug")
    group = parser.add_argument_group("smart plug")
    group.add_argument("--load", type=float, default=60.0, help="power of the load behind the relay, W (default: 60)")
    group.add_argument("--off", action="store_true", help="start with the relay open")
    group.add_argument("--prefix", default="plugs", help="topic prefix (default: plugs)")


def run(args: argparse.Namespace) -> int:
    return run_fleet(
        args,
        "smart-plug",
        lambda device_id, rng: SmartPlug(device_id, rng, load_w=args.load, relay=not args.off, prefix=args.prefix),
    )

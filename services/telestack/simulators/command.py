"""``telestack simulate <kind>``: run one simulator (a vehicle on CAN, fermenters, a meter or a plug on MQTT)."""

from __future__ import annotations

import argparse
import importlib

__all__ = ["KINDS", "configure", "run"]

# kind → (module, one-line summary); each module provides configure(parser) and run(args) -> int.
KINDS: dict[str, tuple[str, str]] = {
    "vehicle": ("telestack.simulators.vehicle", "a racing car on three CAN buses, from the project DBC"),
    "fermenters": ("telestack.simulators.fermenters", "STC-1000 fermenter thermostats over MQTT (set_setpoint)"),
    "energy-meter": ("telestack.simulators.energy_meter", "an Eco-devices teleinfo electricity meter over MQTT"),
    "smart-plug": ("telestack.simulators.smart_plug", "myStrom-style smart plugs over MQTT (on, off, toggle)"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", required=True, metavar="kind")
    for kind, (module_name, summary) in sorted(KINDS.items()):
        module = importlib.import_module(module_name)
        kind_parser = sub.add_parser(kind, help=summary, description=summary)
        module.configure(kind_parser)
        kind_parser.set_defaults(_simulator=module)


def run(args: argparse.Namespace) -> int:
    return int(args._simulator.run(args) or 0)

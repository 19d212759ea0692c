"""The ``telestack`` command: one subcommand per service or tool, each with its own ``--help``.

Subcommand modules are imported only when chosen, so ``telestack --help`` stays fast. A command module
provides ``configure(parser)`` (adds its arguments) and ``run(args) -> int`` (its exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from telestack import __version__
from telestack.core.errors import TelestackError

__all__ = ["COMMANDS", "main"]

# name → (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("telestack.simulators.command", "run a simulated vehicle (CAN) or MQTT devices"),
    "can-gateway": ("telestack.can_gateway.command", "CAN buses or logs → DBC decoding → Kafka telemetry + can.raw"),
    "can-replay": ("telestack.can_gateway.replay", "re-decode can.raw or a log with a (corrected) DBC; export candump"),
    "influx-writer": ("telestack.influx_writer.command", "Kafka → InfluxDB, commit after write, bad lines to DLQ"),
    "influx-init": ("telestack.influx_writer.init_command", "create buckets and scoped tokens (and drop the old task)"),
    "downsample": ("telestack.influx_writer.downsample_command", "raw → 1-minute mean/min/max/count, window by window"),
    "export": ("telestack.influx_writer.export_command", "export a time range from InfluxDB to Parquet or CSV"),
    "import": ("telestack.influx_writer.import_command", "import a Parquet or CSV export into an InfluxDB bucket"),
    "alerting": ("telestack.alerting.command", "evaluate alert rules on telemetry and notify (SMS, webhook, ...)"),
    "alerts": ("telestack.alerting.alerts_command", "alert rules: check a file, backtest on history, show status"),
    "mqtt-bridge": ("telestack.mqtt_bridge.command", "MQTT devices → mapping rules → Kafka telemetry, acks → commands"),
    "actuator": ("telestack.actuator.command", "HTTP API: device commands over MQTT, edge-box ingest, /ui page"),
    "tokens": ("telestack.actuator.tokens_command", "create, list and revoke the actuator's bearer tokens"),
    "topics": (
        "telestack.kafka_admin.topics_command",
        "create the Kafka topics with their partitions, retention, compaction",
    ),
    "demo": ("telestack.demo.command", "the whole stack without Docker, with simulators (up, down, check)"),
    "tail": ("telestack.demo.tail", "latest values of every series, live in the terminal (from Kafka)"),
    "kafka-lag": ("telestack.kafka_admin.lag_command", "Kafka consumer lag per group and topic on /metrics"),
    "native": (
        "telestack.native.command",
        "install, start and stop Kafka, Mosquitto and InfluxDB without Docker",
    ),
}


def _overview() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in sorted(COMMANDS.items())]
    return "commands:\n" + "\n".join(lines) + "\n\nRun 'telestack <command> --help' for a command's options."


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(
        prog="telestack",
        description="telestack: telemetry from devices and vehicles through Kafka into InfluxDB and Grafana.",
        epilog=_overview(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"telestack {__version__}")
    top.add_argument("command", choices=sorted(COMMANDS), metavar="command", help="what to run (see below)")
    if not args or args[0].startswith("-"):
        top.parse_args(args or ["--help"])
        return 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        top.parse_args([name])  # prints the list of valid commands and exits 2
    module_name, summary = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"telestack {name}", description=summary)
    module.configure(parser)
    parsed = parser.parse_args(rest)
    try:
        return int(module.run(parsed) or 0)
    except TelestackError as exc:
        print(f"telestack {name}: error: {exc}", file=sys.stderr)  # noqa: T201 - the CLI's last word
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

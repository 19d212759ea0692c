"""The images the stack runs: official tags from `.env.example`, or the local stand-ins `make images-local` builds.

Run as a script (no dependency beyond Python), it writes a `.env` for docker compose::

    python3 services/telestack/native/images.py [--images local] .env.example .env

every empty secret generated (mode 0600) and, with ``--images local``, the ``*_IMAGE`` variables pointing at the
stand-ins. The stand-ins run the very versions of the native servers (`telestack native install`), so the native
servers, testcontainers and compose test the same Kafka, Mosquitto and InfluxDB.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
from pathlib import Path

__all__ = ["LOCAL_IMAGES", "write_env"]

# .env variable → stand-in built by services/telestack/native/scripts/build-images.sh (versions: the native ones).
LOCAL_IMAGES = {
    "PYTHON_IMAGE": "telestack-local/python:3.11",
    "KAFKA_IMAGE": "telestack-local/kafka:4.4.0",
    "MOSQUITTO_IMAGE": "telestack-local/mosquitto:2.0.11",
    "INFLUXDB_IMAGE": "telestack-local/influxdb:2.7.12",
    "TELEGRAF_IMAGE": "telestack-local/telegraf:1.37.2",
}
# Secrets the stack itself uses, generated when empty; notifier secrets (SMS, SMTP...) come from their providers.
_GENERATED = re.compile(r"^(MQTT_\w+_PASSWORD|INFLUXDB_ADMIN_PASSWORD|INFLUXDB_ADMIN_TOKEN|GRAFANA_ADMIN_PASSWORD)=$")


def write_env(example: Path, target: Path, images: str = "official", extra: dict[str, str] | None = None) -> None:
    """`example` with secrets generated, local images selected when `images` is "local", and `extra` values."""
    values = {**(LOCAL_IMAGES if images == "local" else {}), **(extra or {})}
    lines = []
    for line in example.read_text().splitlines():
        name = line.split("=", 1)[0]
        if _GENERATED.match(line):
            line = f"{name}={secrets.token_hex(24)}"
        elif "=" in line and not line.startswith("#") and name in values:
            line = f"{name}={values.pop(name)}"
        lines.append(line)
    lines += [f"{name}={value}" for name, value in values.items()]
    target.write_text("\n".join(lines) + "\n")
    os.chmod(target, 0o600)


def main() -> int:
    parser = argparse.ArgumentParser(description="write a .env for docker compose, secrets generated")
    parser.add_argument(
        "--images",
        choices=["official", "local"],
        default="official",
        help="local: the telestack-local/* stand-ins of `make images-local` (no registry needed)",
    )
    parser.add_argument("example", type=Path, help=".env.example")
    parser.add_argument("target", type=Path, help="the .env to write")
    args = parser.parse_args()
    write_env(args.example, args.target, args.images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``telestack alerting``: evaluate alert rules on the telemetry stream and notify."""

from __future__ import annotations

import argparse

from telestack.alerting.rules_watcher import load_all
from telestack.alerting.service import AlertingService
from telestack.alerting.settings import AlertingSettings
from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.runtime import Logger
from telestack.core.service import run_service

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Evaluate the alert rules (alerting.rules) on the telemetry topic; publish state changes to the alerts "
        "topic and InfluxDB; notify by webhook, email, SMS gateway or MQTT."
    )
    add_settings_arguments(parser, AlertingSettings)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(AlertingSettings, args)
    # A bad rules file (or the device registry its no-data rules expect devices from) stops here, naming the line.
    loaded = load_all(settings.alerting.rules, settings.alerting.devices_file)

    def build(log: Logger) -> AlertingService:
        log.info(
            "rules loaded",
            file=str(settings.alerting.rules),
            rules=len(loaded.ruleset.rules),
            expected={rule: list(ids) for rule, ids in loaded.expected.items()},
        )
        return service

    # Built before anything is served, so a missing notifier secret stops here, naming the variable.
    service = AlertingService(settings, loaded.ruleset, expected=loaded.expected)
    return run_service("alerting", settings, build, http=settings.alerting.http)

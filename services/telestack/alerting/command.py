"""``telestack alerting``: evaluate alert rules on the telemetry stream and notify."""

from __future__ import annotations

import argparse

from telestack.alerting.rules_watcher import load_all
from telestack.alerting.service import AlertingService
from telestack.alerting.settings import AlertingSettings
from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.runtime import service_runtime

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
    service = AlertingService(settings, loaded.ruleset, expected=loaded.expected)  # a missing secret stops here
    with service_runtime("alerting", settings.log, settings.alerting.http) as rt:
        service.log = rt.log
        for name, probe in service.health_checks().items():
            rt.health.add_check(name, probe)
        rt.log.info(
            "rules loaded",
            file=str(settings.alerting.rules),
            rules=len(loaded.ruleset.rules),
            expected={rule: list(ids) for rule, ids in loaded.expected.items()},
        )
        service.run(rt.shutdown)
    return 0

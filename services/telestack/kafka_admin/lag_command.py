"""``telestack kafka-lag``: consumer lag of every Kafka consumer group on /metrics, for the Pipeline health dashboard.

Gauge ``telestack_kafka_consumer_lag_records{group, topic}``: records the group has not consumed yet.
"""

from __future__ import annotations

import argparse

from prometheus_client import Gauge
from pydantic import Field

from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.errors import KafkaError
from telestack.core.runtime import service_runtime
from telestack.core.settings import HttpSettings, KafkaSettings, Section, TelestackSettings
from telestack.kafka_admin.lag import LagProbe

__all__ = ["LagOptions", "LagSettings", "configure", "run"]

LAG_PORT = 9105

LAG = Gauge("telestack_kafka_consumer_lag_records", "records a consumer group has not consumed yet", ["group", "topic"])
UP = Gauge("telestack_kafka_lag_probe_up", "1 when the last lag probe reached Kafka")


class LagOptions(Section):
    groups: list[str] = Field(default_factory=list, description="consumer groups to watch (empty: every group)")
    interval_s: float = Field(10.0, gt=0, description="time between two probes, s")
    timeout_s: float = Field(10.0, gt=0, description="how long one probe waits for Kafka, s")
    http: HttpSettings = Field(default_factory=lambda: HttpSettings(port=LAG_PORT), description="/healthz and /metrics")


class LagSettings(TelestackSettings):
    kafka: KafkaSettings = Field(default_factory=lambda: KafkaSettings())
    kafka_lag: LagOptions = Field(default_factory=lambda: LagOptions())


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, LagSettings)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(LagSettings, args)
    options = settings.kafka_lag
    with service_runtime("kafka-lag", settings.log, options.http) as rt:
        probe = LagProbe(settings.kafka, options.timeout_s)
        last: list[tuple[bool, str]] = [(False, "no probe yet")]
        rt.health.add_check("kafka", lambda: last[-1])
        while not rt.shutdown.is_set():
            try:
                lags = probe.lag(options.groups or None)
            except Exception as exc:  # KafkaError while Kafka is away; anything else is a bug: log, go on
                UP.set(0)
                last.append((False, str(exc) or type(exc).__name__))
                if isinstance(exc, KafkaError):
                    rt.log.warning("lag probe failed", error=str(exc))
                else:
                    rt.log.error("lag probe failed unexpectedly", error=repr(exc))
                probe = LagProbe(settings.kafka, options.timeout_s)  # fresh metadata for the next try
            else:
                for group, topics in lags.items():
                    for topic, lag in topics.items():
                        LAG.labels(group, topic).set(lag)
                UP.set(1)
                last.append((True, f"{len(lags)} groups"))
            del last[:-1]
            rt.shutdown.wait(options.interval_s)
    return 0

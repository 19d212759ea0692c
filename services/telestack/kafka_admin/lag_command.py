"""``telestack kafka-lag``: consumer lag of every Kafka consumer group on /metrics, for the Pipeline health dashboard.

Gauge ``telestack_kafka_consumer_lag_records{group, topic}``: records the group has not consumed yet.
"""

from __future__ import annotations

import argparse

from prometheus_client import CollectorRegistry, Gauge
from pydantic import Field

from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.errors import KafkaError
from telestack.core.metrics import ServiceMetrics
from telestack.core.ports import SERVICE_PORTS
from telestack.core.runtime import Check, Logger, Shutdown, get_logger
from telestack.core.service import ServiceBase, run_service
from telestack.core.settings import HttpSettings, KafkaSettings, Section, TelestackSettings
from telestack.kafka_admin.lag import LagProbe

__all__ = ["LagMetrics", "LagOptions", "LagService", "LagSettings", "configure", "run"]


class LagMetrics(ServiceMetrics):
    """The lag probe's gauges, on its own registry (or the one given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        self.lag = Gauge(
            "telestack_kafka_consumer_lag_records",
            "records a consumer group has not consumed yet",
            ["group", "topic"],
            registry=self.registry,
        )
        self.up = Gauge(
            "telestack_kafka_lag_probe_up", "1 when the last lag probe reached Kafka", registry=self.registry
        )


class LagOptions(Section):
    groups: list[str] = Field(default_factory=list, description="consumer groups to watch (empty: every group)")
    interval_s: float = Field(10.0, gt=0, description="time between two probes, s")
    timeout_s: float = Field(10.0, gt=0, description="how long one probe waits for Kafka, s")
    http: HttpSettings = Field(
        default_factory=lambda: HttpSettings(port=SERVICE_PORTS["kafka-lag"]), description="/healthz and /metrics"
    )


class LagSettings(TelestackSettings):
    kafka: KafkaSettings = Field(default_factory=lambda: KafkaSettings())
    kafka_lag: LagOptions = Field(default_factory=lambda: LagOptions())


class LagService(ServiceBase):
    """Probes the lag of every watched group every `interval_s` and sets the gauges; healthy when Kafka answered."""

    name = "kafka-lag"

    def __init__(self, settings: LagSettings, log: Logger | None = None, metrics: LagMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else LagMetrics()
        self.options = settings.kafka_lag
        self.log: Logger = log if log is not None else get_logger("kafka-lag")
        self.probe = LagProbe(settings.kafka, self.options.timeout_s)
        self.last: tuple[bool, str] = (False, "no probe yet")  # one assignment: read from the HTTP thread

    def health(self) -> list[Check]:
        ok, detail = self.last
        return [Check("kafka", ok, detail)]

    def run(self, shutdown: Shutdown) -> int:
        while not shutdown.is_set():
            self.probe_once()
            shutdown.wait(self.options.interval_s)
        return 0

    def probe_once(self) -> None:
        try:
            lags = self.probe.lag(self.options.groups or None)
        except Exception as exc:  # KafkaError while Kafka is away; anything else is a bug: log, go on
            self.metrics.up.set(0)
            self.last = (False, str(exc) or type(exc).__name__)
            if isinstance(exc, KafkaError):
                self.log.warning("lag probe failed", error=str(exc))
            else:
                self.log.error("lag probe failed unexpectedly", error=repr(exc))
            self.probe = LagProbe(self.settings.kafka, self.options.timeout_s)  # fresh metadata for the next try
            return
        for group, topics in lags.items():
            for topic, lag in topics.items():
                self.metrics.lag.labels(group, topic).set(lag)
        self.metrics.up.set(1)
        self.last = (True, f"{len(lags)} groups")


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, LagSettings)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(LagSettings, args)
    return run_service("kafka-lag", settings, lambda log: LagService(settings, log), http=settings.kafka_lag.http)

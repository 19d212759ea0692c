"""Prometheus metrics of the influx-writer, served on /metrics (names: ``telestack_influx_writer_*``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from telestack.core.metrics import ServiceMetrics

__all__ = ["WriterMetrics"]

_PREFIX = "telestack_influx_writer"


class WriterMetrics(ServiceMetrics):
    """One writer's metrics (its service, flusher and write sizer share them), on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.records_consumed = Counter(
            f"{_PREFIX}_records_consumed", "Kafka records consumed from the telemetry topic", registry=r
        )
        self.lines_written = Counter(
            f"{_PREFIX}_lines_written", "lines of line protocol accepted by InfluxDB", registry=r
        )
        self.batches_written = Counter(
            f"{_PREFIX}_batches_written", "batches fully handled (written, bad records to the DLQ)", registry=r
        )
        self.write_seconds = Histogram(
            f"{_PREFIX}_write_seconds",
            "duration of one successful write request",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.write_failures = Counter(
            f"{_PREFIX}_write_failures",
            "failed write requests by kind (unavailable, rejected, auth)",
            ["kind"],
            registry=r,
        )
        self.dlq_records = Counter(
            f"{_PREFIX}_dlq_records", "records (or lines) InfluxDB refused, sent to the DLQ", registry=r
        )
        self.paused = Gauge(
            f"{_PREFIX}_paused", "1 while consumption is paused because writes are backing up", registry=r
        )
        self.in_flight_batches = Gauge(
            f"{_PREFIX}_in_flight_batches", "batches queued for or being written", registry=r
        )
        self.write_timeouts = Counter(
            f"{_PREFIX}_write_timeouts", "write requests InfluxDB did not answer within the timeout", registry=r
        )
        self.write_lines_target = Gauge(
            f"{_PREFIX}_write_lines_target",
            "lines per write request now (halved on timeouts, grown back when fast)",
            registry=r,
        )
        self.write_timeout_seconds = Gauge(
            f"{_PREFIX}_write_timeout_seconds",
            "timeout of a write request now (doubled on timeouts, back when fast)",
            registry=r,
        )
        self.last_write_timestamp = Gauge(
            f"{_PREFIX}_last_write_timestamp_seconds", "Unix time of the last successful write", registry=r
        )

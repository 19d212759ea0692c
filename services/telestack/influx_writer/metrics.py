"""Prometheus metrics of the influx-writer, served on /metrics (names: ``telestack_influx_writer_*``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCHES_WRITTEN",
    "DLQ_RECORDS",
    "IN_FLIGHT_BATCHES",
    "LAST_WRITE_TIMESTAMP",
    "LINES_WRITTEN",
    "PAUSED",
    "RECORDS_CONSUMED",
    "WRITE_FAILURES",
    "WRITE_LINES_TARGET",
    "WRITE_SECONDS",
    "WRITE_TIMEOUTS",
    "WRITE_TIMEOUT_SECONDS",
]

_PREFIX = "telestack_influx_writer"

RECORDS_CONSUMED = Counter(f"{_PREFIX}_records_consumed", "Kafka records consumed from the telemetry topic")
LINES_WRITTEN = Counter(f"{_PREFIX}_lines_written", "lines of line protocol accepted by InfluxDB")
BATCHES_WRITTEN = Counter(f"{_PREFIX}_batches_written", "batches fully handled (written, bad records to the DLQ)")
WRITE_SECONDS = Histogram(
    f"{_PREFIX}_write_seconds",
    "duration of one successful write request",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WRITE_FAILURES = Counter(
    f"{_PREFIX}_write_failures", "failed write requests by kind (unavailable, rejected, auth)", ["kind"]
)
DLQ_RECORDS = Counter(f"{_PREFIX}_dlq_records", "records (or lines) InfluxDB refused, sent to the DLQ")
PAUSED = Gauge(f"{_PREFIX}_paused", "1 while consumption is paused because writes are backing up")
IN_FLIGHT_BATCHES = Gauge(f"{_PREFIX}_in_flight_batches", "batches queued for or being written")
WRITE_TIMEOUTS = Counter(f"{_PREFIX}_write_timeouts", "write requests InfluxDB did not answer within the timeout")
WRITE_LINES_TARGET = Gauge(
    f"{_PREFIX}_write_lines_target", "lines per write request now (halved on timeouts, grown back when fast)"
)
WRITE_TIMEOUT_SECONDS = Gauge(
    f"{_PREFIX}_write_timeout_seconds", "timeout of a write request now (doubled on timeouts, back when fast)"
)
LAST_WRITE_TIMESTAMP = Gauge(f"{_PREFIX}_last_write_timestamp_seconds", "Unix time of the last successful write")

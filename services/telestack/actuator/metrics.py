"""Prometheus metrics of the actuator (one `ActuatorMetrics` per `ActuatorService`, served at ``/metrics``).

Labels stay low-cardinality: command names, states, route templates; never device ids or token names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from telestack.core.metrics import ServiceMetrics

__all__ = ["ActuatorMetrics"]


class ActuatorMetrics(ServiceMetrics):
    """One actuator's metrics, on its own registry (or the one given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.commands = Counter("telestack_actuator_commands_total", "commands issued", ["command"], registry=r)
        self.outcomes = Counter(
            "telestack_actuator_command_outcomes_total", "commands finished, by final state", ["state"], registry=r
        )
        self.commands_in_flight = Gauge(
            "telestack_actuator_commands_in_flight", "commands waiting for their device's ack", registry=r
        )
        self.ack_seconds = Histogram(
            "telestack_actuator_command_ack_seconds",
            "time from issuing a command to its device's ack",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.acks = Counter(
            "telestack_actuator_acks_total", "device acks received, by where they were read", ["source"], registry=r
        )
        self.invalid_acks = Counter(
            "telestack_actuator_invalid_acks_total", "messages on ack topics that are not acks", registry=r
        )
        self.audit_errors = Counter(
            "telestack_actuator_audit_errors_total", "audit records Kafka did not confirm", registry=r
        )
        self.ingest_points = Counter(
            "telestack_actuator_ingest_points_total", "points accepted by /v1/ingest", registry=r
        )
        self.ingest_refused = Counter(
            "telestack_actuator_ingest_refused_total", "ingest requests refused, by status", ["status"], registry=r
        )
        self.auth_failures = Counter(
            "telestack_actuator_auth_failures_total", "requests refused by auth", ["status"], registry=r
        )
        self.rate_limited = Counter(
            "telestack_actuator_rate_limited_total", "requests refused by the per-token rate limit", registry=r
        )
        self.http_requests = Counter(
            "telestack_actuator_http_requests_total",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "telestack_actuator_http_request_seconds",
            "HTTP request duration",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )

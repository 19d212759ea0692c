"""Prometheus metrics of the actuator (default registry, served at ``/metrics``).

Labels stay low-cardinality: command names, states, route templates; never device ids or token names.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ACKS",
    "ACK_SECONDS",
    "AUDIT_ERRORS",
    "AUTH_FAILURES",
    "COMMANDS",
    "COMMANDS_IN_FLIGHT",
    "HTTP_REQUESTS",
    "HTTP_SECONDS",
    "INGEST_POINTS",
    "INGEST_REFUSED",
    "INVALID_ACKS",
    "OUTCOMES",
    "RATE_LIMITED",
]

COMMANDS = Counter("telestack_actuator_commands_total", "commands issued", ["command"])
OUTCOMES = Counter("telestack_actuator_command_outcomes_total", "commands finished, by final state", ["state"])
COMMANDS_IN_FLIGHT = Gauge("telestack_actuator_commands_in_flight", "commands waiting for their device's ack")
ACK_SECONDS = Histogram(
    "telestack_actuator_command_ack_seconds",
    "time from issuing a command to its device's ack",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ACKS = Counter("telestack_actuator_acks_total", "device acks received, by where they were read", ["source"])
INVALID_ACKS = Counter("telestack_actuator_invalid_acks_total", "messages on ack topics that are not acks")
AUDIT_ERRORS = Counter("telestack_actuator_audit_errors_total", "audit records Kafka did not confirm")
INGEST_POINTS = Counter("telestack_actuator_ingest_points_total", "points accepted by /v1/ingest")
INGEST_REFUSED = Counter("telestack_actuator_ingest_refused_total", "ingest requests refused, by status", ["status"])
AUTH_FAILURES = Counter("telestack_actuator_auth_failures_total", "requests refused by auth", ["status"])
RATE_LIMITED = Counter("telestack_actuator_rate_limited_total", "requests refused by the per-token rate limit")
HTTP_REQUESTS = Counter("telestack_actuator_http_requests_total", "HTTP requests served", ["method", "route", "status"])
HTTP_SECONDS = Histogram(
    "telestack_actuator_http_request_seconds",
    "HTTP request duration",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

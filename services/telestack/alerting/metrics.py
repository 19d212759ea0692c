"""Prometheus metrics of the alerting service (``/metrics``): one `AlertingMetrics` per service, shared by its
loop, its notifier workers and its InfluxDB annotation writer, on the service's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from telestack.core.metrics import ServiceMetrics

__all__ = ["AlertingMetrics"]


class AlertingMetrics(ServiceMetrics):
    """One alerting service's metrics, on its own registry (or the one given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        # the service loop
        self.points = Counter("telestack_alerting_points_total", "telemetry points evaluated", registry=r)
        self.bad_lines = Counter(
            "telestack_alerting_bad_lines_total", "telemetry lines that could not be parsed (skipped)", registry=r
        )
        self.changes = Counter("telestack_alerting_state_changes_total", "alert state changes", ["state"], registry=r)
        self.instances = Gauge("telestack_alerting_instances", "alert instances by state", ["state"], registry=r)
        self.reloads = Counter(
            "telestack_alerting_rule_reloads_total",
            "edits of the rules file: applied or refused",
            ["result"],
            registry=r,
        )
        # the InfluxDB annotation writer
        self.annotations = Counter(
            "telestack_alerting_annotations_total", "alert points written to InfluxDB", ["result"], registry=r
        )
        # the notifier workers
        self.notifications = Counter(
            "telestack_alerting_notifications_total",
            "notifications by notifier and outcome",
            ["notifier", "result"],
            registry=r,
        )
        self.send_seconds = Histogram(
            "telestack_alerting_notification_send_seconds",
            "time to deliver one notification (last try)",
            ["notifier"],
            registry=r,
        )

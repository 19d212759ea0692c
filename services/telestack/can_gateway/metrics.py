"""Prometheus metrics of the CAN gateway (``/metrics``); the gateway loop counts in plain ints and publishes
here once per batch, so the per-frame path never takes a metric's lock."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from telestack.core.metrics import ServiceMetrics

__all__ = ["MAX_ID_LABELS", "PREFIX", "GatewayMetrics", "id_label"]

PREFIX = "telestack_can_gateway"
MAX_ID_LABELS = 256  # distinct ids labelled per bus; the rest count under id="other" (garbage stays bounded)


class GatewayMetrics(ServiceMetrics):
    """One gateway's metrics, on its own registry (or the one given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.frames = Counter(f"{PREFIX}_frames", "CAN frames read", ["bus"], registry=r)
        self.lines = Counter(f"{PREFIX}_lines", "line protocol lines produced", ["bus"], registry=r)
        self.unknown_frames = Counter(
            f"{PREFIX}_unknown_frames", "frames whose id no database defines", ["bus", "id"], registry=r
        )
        self.decode_failures = Counter(
            f"{PREFIX}_decode_failures", "frames that failed to decode", ["bus", "id"], registry=r
        )
        self.records = Counter(f"{PREFIX}_records", "Kafka records confirmed by the broker", ["topic"], registry=r)
        self.delivery_failures = Counter(f"{PREFIX}_delivery_failures", "Kafka deliveries that failed", registry=r)
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters", "lines sent to the dead-letter topic, by reason", ["bus", "reason"], registry=r
        )
        self.unreadable_input = Counter(
            f"{PREFIX}_unreadable_input",
            "input a source skipped because no frame can be made of it (a udp_multicast datagram python-can "
            "refuses), by kind",
            ["bus", "kind"],
            registry=r,
        )
        self.dbc_reloads = Counter(f"{PREFIX}_database_reloads", "database hot reloads", ["result"], registry=r)
        self.spool_depth = Gauge(f"{PREFIX}_spool_depth_records", "records waiting in the disk spool", registry=r)
        self.spool_bytes = Gauge(f"{PREFIX}_spool_bytes", "bytes of the disk spool", registry=r)
        self.spool_age = Gauge(
            f"{PREFIX}_spool_age_seconds", "age of the oldest record waiting in the spool (0: empty)", registry=r
        )
        self.spool_dropped_frames = Counter(
            f"{PREFIX}_spool_dropped_frames", "frames dropped because the spool was full", registry=r
        )
        self.kafka_up = Gauge(
            f"{PREFIX}_kafka_up", "1 while Kafka confirms records, 0 while the gateway spools", registry=r
        )


def id_label(key: int, seen: set[int]) -> str:
    """The `id` label of a frame key, or "other" once `MAX_ID_LABELS` ids have a label of their own."""
    from telestack.can_gateway.decoder import describe_key

    if key in seen or len(seen) < MAX_ID_LABELS:
        seen.add(key)
        return describe_key(key)
    return "other"

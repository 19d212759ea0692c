"""Prometheus metrics of the CAN gateway (``/metrics``); the gateway loop counts in plain ints and publishes
here once per batch, so the per-frame path never takes a metric's lock."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "DBC_RELOADS",
    "DEAD_LETTERS",
    "DECODE_FAILURES",
    "FRAMES",
    "LINES",
    "MAX_ID_LABELS",
    "RECORDS",
    "SPOOL_AGE",
    "SPOOL_BYTES",
    "SPOOL_DEPTH",
    "SPOOL_DROPPED_FRAMES",
    "UNKNOWN_FRAMES",
    "id_label",
]

PREFIX = "telestack_can_gateway"
MAX_ID_LABELS = 256  # distinct ids labelled per bus; the rest count under id="other" (garbage stays bounded)

FRAMES = Counter(f"{PREFIX}_frames", "CAN frames read", ["bus"])
LINES = Counter(f"{PREFIX}_lines", "line protocol lines produced", ["bus"])
UNKNOWN_FRAMES = Counter(f"{PREFIX}_unknown_frames", "frames whose id no database defines", ["bus", "id"])
DECODE_FAILURES = Counter(f"{PREFIX}_decode_failures", "frames that failed to decode", ["bus", "id"])
RECORDS = Counter(f"{PREFIX}_records", "Kafka records confirmed by the broker", ["topic"])
DELIVERY_FAILURES = Counter(f"{PREFIX}_delivery_failures", "Kafka deliveries that failed")
DEAD_LETTERS = Counter(f"{PREFIX}_dead_letters", "lines sent to the dead-letter topic, by reason", ["bus", "reason"])
DBC_RELOADS = Counter(f"{PREFIX}_database_reloads", "database hot reloads", ["result"])
SPOOL_DEPTH = Gauge(f"{PREFIX}_spool_depth_records", "records waiting in the disk spool")
SPOOL_BYTES = Gauge(f"{PREFIX}_spool_bytes", "bytes of the disk spool")
SPOOL_AGE = Gauge(f"{PREFIX}_spool_age_seconds", "age of the oldest record waiting in the spool (0: empty)")
SPOOL_DROPPED_FRAMES = Counter(f"{PREFIX}_spool_dropped_frames", "frames dropped because the spool was full")
KAFKA_UP = Gauge(f"{PREFIX}_kafka_up", "1 while Kafka confirms records, 0 while the gateway spools")


def id_label(key: int, seen: set[int]) -> str:
    """The `id` label of a frame key, or "other" once `MAX_ID_LABELS` ids have a label of their own."""
    from telestack.can_gateway.decoder import describe_key

    if key in seen or len(seen) < MAX_ID_LABELS:
        seen.add(key)
        return describe_key(key)
    return "other"

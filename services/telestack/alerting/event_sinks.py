"""Where every alert state change goes besides notifiers: Kafka ``alerts`` (JSON) and InfluxDB ``alerts``.

The InfluxDB point is what Grafana shows as an annotation: measurement ``alerts``, tags ``rule``,
``severity``, ``state`` and the series' own tags (``device``...), fields ``title`` and ``text`` (rendered
summary / description), ``value``, ``setpoint``, ``fingerprint``, time = the moment of the change. The
writer runs in its own thread with a bounded queue and retries, so a slow InfluxDB never slows evaluation.

A Grafana annotation query (Flux) for the fermentation dashboard::

    from(bucket: "telemetry") |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
      |> filter(fn: (r) => r._measurement == "alerts" and r._field == "text" and r.state != "pending")
"""

from __future__ import annotations

import json
import queue
import threading

import httpx
from prometheus_client import Counter

from telestack.alerting.alert import StateChange
from telestack.core.kafka import KafkaProducer
from telestack.core.lineproto import FieldValue, Point, format_lines
from telestack.core.runtime import get_logger
from telestack.core.settings import InfluxSettings

__all__ = ["InfluxAnnotationWriter", "KafkaAlertPublisher", "annotation_point"]

ANNOTATIONS = Counter("telestack_alerting_annotations_total", "alert points written to InfluxDB", ["result"])
log = get_logger("alerting.sinks")
_RESERVED_TAGS = frozenset({"rule", "severity", "state"})


class KafkaAlertPublisher:
    """Publishes each state change as JSON on the alerts topic, keyed by fingerprint (ordered per instance)."""

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    def publish(self, change: StateChange, severity: str) -> None:
        event = change.to_event(severity)
        self._producer.produce(
            self.topic,
            json.dumps(event, ensure_ascii=False, separators=(",", ":")),
            key=change.instance.fingerprint,
            timestamp_ms=change.at_ns // 1_000_000,
        )


def annotation_point(change: StateChange, severity: str) -> Point:
    """The InfluxDB point of one state change (see the module docstring)."""
    inst = change.instance
    tags = {k: v for k, v in inst.tags.items() if k not in _RESERVED_TAGS and v != ""}
    tags.update(rule=inst.rule, severity=severity, state=change.state.value)
    summary = change.annotations.get("summary", inst.fingerprint)
    fields: dict[str, FieldValue] = {
        "title": f"{change.state.value.upper()} {inst.rule}",
        "text": summary,
        "fingerprint": inst.fingerprint,
        "previous": change.previous.value,
    }
    if "description" in change.annotations:
        fields["description"] = change.annotations["description"]
    if change.value is not None:
        fields["value"] = float(change.value)
    if change.setpoint is not None:
        fields["setpoint"] = float(change.setpoint)
    return Point("alerts", tags, fields, change.at_ns)


class InfluxAnnotationWriter:
    """Writes annotation points to InfluxDB 2 (``/api/v2/write``) from a thread, in batches, with retries."""

    def __init__(
        self, settings: InfluxSettings, bucket: str | None = None, *, max_queue: int = 10_000, batch: int = 500
    ) -> None:
        self.settings = settings
        self.bucket = bucket or settings.bucket
        self._token = settings.require_token()
        self._queue: queue.Queue[Point] = queue.Queue(maxsize=max_queue)
        self._batch = batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="influx-annotations", daemon=True)
        self.last_error: str | None = None
        self.written = 0
        self.dropped = 0

    def start(self) -> InfluxAnnotationWriter:
        self._thread.start()
        return self

    def write(self, point: Point) -> None:
        try:
            self._queue.put_nowait(point)
        except queue.Full:
            self.dropped += 1
            ANNOTATIONS.labels("dropped").inc()

    def healthy(self) -> tuple[bool, str]:
        backlog = self._queue.qsize()
        if self.last_error is not None:
            return False, f"{self.last_error} ({backlog} queued)"
        return True, f"{self.written} written, {backlog} queued, {self.dropped} dropped"

    def _post(self, client: httpx.Client, points: list[Point]) -> None:
        response = client.post(
            f"{self.settings.url.rstrip('/')}/api/v2/write",
            params={"org": self.settings.org, "bucket": self.bucket, "precision": "ns"},
            headers={"Authorization": f"Token {self._token}", "Content-Type": "text/plain; charset=utf-8"},
            content=format_lines(points).encode("utf-8"),
        )
        if response.status_code >= 300:
            raise httpx.HTTPStatusError(
                f"HTTP {response.status_code}: {response.text[:200]}", request=response.request, response=response
            )

    def _run(self) -> None:
        backoff = 0.5
        pending: list[Point] = []
        with httpx.Client(timeout=self.settings.timeout_ms / 1000) as client:
            while not (self._stop.is_set() and not pending and self._queue.empty()):
                if not pending:
                    try:
                        pending.append(self._queue.get(timeout=0.2))
                    except queue.Empty:
                        continue
                while len(pending) < self._batch:
                    try:
                        pending.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                try:
                    self._post(client, pending)
                except httpx.HTTPError as exc:
                    self.last_error = f"InfluxDB write failed: {exc}"
                    ANNOTATIONS.labels("retried").inc()
                    if self._stop.is_set():
                        log.warning("alert annotations lost at shutdown", count=len(pending), error=str(exc))
                        return
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                ANNOTATIONS.labels("written").inc(len(pending))
                self.written += len(pending)
                self.last_error = None
                backoff = 0.5
                pending = []

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (within `timeout_s`), then stop."""
        self._stop.set()
        self._thread.join(timeout_s)

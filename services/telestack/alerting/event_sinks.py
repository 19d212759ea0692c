"""Where every alert state change goes besides notifiers: Kafka ``alerts`` (JSON) and InfluxDB ``alerts``.

The InfluxDB point is what Grafana shows as an annotation: measurement ``alerts``, tags ``rule``,
``severity``, ``state`` and the series' own tags (``device``...), fields ``title`` and ``text`` (rendered
summary / description), ``value``, ``setpoint``, ``fingerprint``, time = the moment of the change. The
writer runs in its own thread with a bounded queue and retries, so a slow InfluxDB never slows evaluation.

What the writer does with each answer, as `telestack.core.influx_http` classifies it (the Kafka ``alerts`` topic
keeps every change whatever happens here):

- 2xx: written.
- refused (400/413/422 a refused point, 401/403 a wrong token): sending it again cannot help. The batch is
  dropped, logged and counted (``annotations_total{result="refused"}``); the points after it go on.
- transient (5xx, 404 bucket not there yet, 408, 429, no answer): retried with exponential backoff (0.5 s
  doubling to 30 s, or InfluxDB's Retry-After) for at most ``retry_for_s``, then dropped, logged and counted
  (``result="expired"``).
- A point that cannot be written as line protocol is dropped alone (``result="invalid"``).

Nothing kills the thread; if it ever ends while the service runs, `healthy` says so (``/healthz``).

A Grafana annotation query (Flux) for the fermentation dashboard::

    from(bucket: "telemetry") |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
      |> filter(fn: (r) => r._measurement == "alerts" and r._field == "text" and r.state != "pending")
"""

from __future__ import annotations

import json
import queue
import threading
import time

from telestack.alerting.alert import StateChange
from telestack.alerting.metrics import AlertingMetrics
from telestack.core.backoff import Backoff
from telestack.core.errors import InfluxAuthError, InfluxRejectedError, InfluxUnavailableError, LineProtocolError
from telestack.core.influx_http import InfluxHttp
from telestack.core.kafka import KafkaProducer
from telestack.core.lineproto import FieldValue, Point, format_point
from telestack.core.runtime import get_logger
from telestack.core.settings import InfluxSettings

__all__ = ["InfluxAnnotationWriter", "KafkaAlertPublisher", "annotation_point"]

log = get_logger("alerting.sinks")
_RESERVED_TAGS = frozenset({"rule", "severity", "state"})
RETRY_BACKOFF = Backoff(initial_s=0.5, max_s=30.0, jitter=0.0)
RETRY_FOR_S = 900.0  # how long a batch is retried on transient errors before it is dropped, s


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
    """Writes annotation points to InfluxDB 2 (``/api/v2/write``) from a thread, in batches, with retries; counts
    them on `metrics` (its service's)."""

    def __init__(
        self,
        settings: InfluxSettings,
        bucket: str | None = None,
        *,
        max_queue: int = 10_000,
        batch: int = 500,
        retry_for_s: float = RETRY_FOR_S,
        metrics: AlertingMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else AlertingMetrics()
        self.bucket = bucket or settings.bucket
        self._influx = InfluxHttp(settings, gzip_level=0)  # needs the token: a missing one fails at start
        self._queue: queue.Queue[Point] = queue.Queue(maxsize=max_queue)
        self._batch = batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="influx-annotations", daemon=True)
        self.retry_for_s = retry_for_s
        self.last_error: str | None = None
        self.written = 0
        self.dropped = 0  # queue full, refused, expired or invalid

    def start(self) -> InfluxAnnotationWriter:
        self._thread.start()
        return self

    def write(self, point: Point) -> None:
        try:
            self._queue.put_nowait(point)
        except queue.Full:
            self.dropped += 1
            self.metrics.annotations.labels("dropped").inc()

    def healthy(self) -> tuple[bool, str]:
        backlog = self._queue.qsize()
        if not self._thread.is_alive() and not self._stop.is_set():
            state = "never started" if self._thread.ident is None else "died"
            return False, f"annotation writer thread {state} ({backlog} queued, {self.dropped} dropped)"
        if self.last_error is not None:
            return False, f"{self.last_error} ({backlog} queued, {self.dropped} dropped)"
        return True, f"{self.written} written, {backlog} queued, {self.dropped} dropped"

    def _drop(self, count: int, result: str, message: str, **facts: object) -> None:
        self.dropped += count
        self.metrics.annotations.labels(result).inc(count)
        log.error(message, count=count, **facts)

    def _format(self, points: list[Point]) -> str:
        """The batch as line protocol; a point that cannot be written is dropped alone."""
        lines: list[str] = []
        for point in points:
            try:
                lines.append(format_point(point))
            except LineProtocolError as exc:
                self._drop(1, "invalid", "alert annotation cannot be written as line protocol", error=str(exc))
        return "\n".join(lines)

    def _run(self) -> None:
        try:
            while not (self._stop.is_set() and self._queue.empty()):
                try:
                    batch = [self._queue.get(timeout=0.2)]
                except queue.Empty:
                    continue
                while len(batch) < self._batch:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                try:
                    self._send(batch)
                except Exception as exc:  # a bug here must cost one batch, never the thread
                    self._drop(
                        len(batch), "failed", "alert annotations dropped on an unexpected error", error=repr(exc)
                    )
        finally:
            self._influx.close()

    def _send(self, batch: list[Point]) -> None:
        """Write one batch: until accepted, refused, or `retry_for_s` of transient errors (see the module doc)."""
        body = self._format(batch)
        if not body:
            return
        count = body.count("\n") + 1
        attempt = 0
        give_up = time.monotonic() + self.retry_for_s
        while True:
            try:
                self._influx.write(body.encode("utf-8"), bucket=self.bucket)
            except (InfluxRejectedError, InfluxAuthError) as exc:
                self.last_error = f"InfluxDB refused alert annotations: {exc}"
                self._drop(count, "refused", "InfluxDB refused alert annotations; dropped", error=str(exc))
                return
            except InfluxUnavailableError as exc:
                error, retry_after_s = str(exc), exc.retry_after_s
            else:
                self.metrics.annotations.labels("written").inc(count)
                self.written += count
                self.last_error = None
                return
            self.last_error = f"InfluxDB write failed: {error}"
            backoff = RETRY_BACKOFF.delay(attempt, retry_after_s)
            if self._stop.is_set() or time.monotonic() + backoff > give_up:
                why = "at shutdown" if self._stop.is_set() else f"after retrying {self.retry_for_s:g} s"
                self._drop(count, "expired", f"alert annotations dropped {why}", error=error)
                return
            self.metrics.annotations.labels("retried").inc()
            self._stop.wait(backoff)
            attempt += 1

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (within `timeout_s`), then stop."""
        self._stop.set()
        self._thread.join(timeout_s)

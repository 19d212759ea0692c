"""One thread and one bounded queue per notifier: a slow or failing notifier never blocks evaluation or
the other notifiers. Each notification is tried up to ``max_attempts`` times with exponential backoff;
the outcome goes to a results queue the service loop drains (to record what was delivered).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from telestack.alerting.errors import NotifierError
from telestack.alerting.metrics import AlertingMetrics
from telestack.alerting.notifiers.base import Notification, Notifier
from telestack.alerting.notifiers.config import NotifierConfig
from telestack.core.backoff import Backoff
from telestack.core.runtime import get_logger

__all__ = ["NotifierWorker", "SendResult"]

log = get_logger("alerting.notifier")


@dataclass(frozen=True, slots=True)
class SendResult:
    notifier: str
    notification: Notification
    ok: bool
    error: str | None
    attempts: int
    done_ns: int


class NotifierWorker:
    """Delivers notifications for one notifier in its own thread; counts on `metrics` (its service's)."""

    def __init__(
        self,
        notifier: Notifier,
        config: NotifierConfig,
        results: queue.Queue[SendResult],
        *,
        max_queue: int = 1000,
        clock_ns: Callable[[], int] = time.time_ns,
        metrics: AlertingMetrics | None = None,
    ) -> None:
        self.notifier = notifier
        self.metrics = metrics if metrics is not None else AlertingMetrics()
        self.config = config
        self._results = results
        self._queue: queue.Queue[Notification] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._clock_ns = clock_ns
        self._thread = threading.Thread(target=self._run, name=f"notifier-{notifier.name}", daemon=True)
        self.busy = False

    @property
    def name(self) -> str:
        return self.notifier.name

    def start(self) -> NotifierWorker:
        self._thread.start()
        return self

    def submit(self, notification: Notification) -> bool:
        """Queue `notification`; when the queue is full it fails at once (reported as a result)."""
        try:
            self._queue.put_nowait(notification)
        except queue.Full:
            self.metrics.notifications.labels(self.name, "dropped").inc()
            self._results.put(SendResult(self.name, notification, False, "queue full", 0, self._clock_ns()))
            return False
        return True

    def backlog(self) -> int:
        return self._queue.qsize() + (1 if self.busy else 0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                notification = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self.busy = True
            try:
                self._results.put(self._deliver(notification))
            finally:
                self.busy = False

    def _deliver(self, notification: Notification) -> SendResult:
        config = self.config
        error = "stopped"
        attempt = 0
        while attempt < config.max_attempts and not self._stop.is_set():
            attempt += 1
            started = time.perf_counter()
            try:
                self.notifier.send(notification)
            except NotifierError as exc:
                error = str(exc)
            except Exception as exc:  # a notifier bug must not kill its thread
                error = f"{exc.__class__.__name__}: {exc}"
            else:
                self.metrics.send_seconds.labels(self.name).observe(time.perf_counter() - started)
                self.metrics.notifications.labels(self.name, "sent").inc()
                return SendResult(self.name, notification, True, None, attempt, self._clock_ns())
            outcome = "retried" if attempt < config.max_attempts else "failed"
            self.metrics.notifications.labels(self.name, outcome).inc()
            log.warning("notification failed", notifier=self.name, attempt=attempt, error=error)
            if attempt < config.max_attempts:
                self._stop.wait(Backoff(config.retry_backoff, config.max_backoff, jitter=0.0).delay(attempt - 1))
        return SendResult(self.name, notification, False, error, attempt, self._clock_ns())

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the current try; queued notifications are left (the durable state resends them)."""
        self._stop.set()
        if self._thread.ident is not None:  # never started: a service closed while it was still opening
            self._thread.join(timeout_s)
        self.notifier.close()

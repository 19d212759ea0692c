"""How much the writer sends in one request, and how long it waits for the answer: both follow InfluxDB's pace.

A fixed 10 s timeout and a fixed 5,000-line batch made no progress at all once InfluxDB took 8-20 s per write:
every request timed out, and the same batch was sent again, forever. So:

- on a timeout, the request size halves (down to `min_lines`) and the timeout doubles (up to `max_timeout_s`);
- after `GROW_AFTER` writes in a row that took less than a quarter of the timeout, the size doubles back
  (up to the configured ``batch_lines``) and the timeout halves back (down to ``influx.timeout_ms``).

A write that timed out may still have been applied by InfluxDB; sending its lines again is harmless, since a
point with the same series and timestamp overwrites itself. The current figures are on /metrics.

>>> sizer = WriteSizer(max_lines=5000, base_timeout_s=10, max_timeout_s=60, min_lines=100)
>>> sizer.timed_out(); sizer.timed_out(); sizer.timed_out()
>>> sizer.lines, sizer.timeout_s
(625, 60)
>>> for _ in range(GROW_AFTER):
...     sizer.succeeded(seconds=1.0)
>>> sizer.lines, sizer.timeout_s
(1250, 30.0)
"""

from __future__ import annotations

from telestack.influx_writer.metrics import WriterMetrics
from telestack.influx_writer.settings import WriterSettings

__all__ = ["GROW_AFTER", "WriteSizer", "write_sizer"]

GROW_AFTER = 3  # fast writes in a row before the size grows back
FAST_FRACTION = 0.25  # a write is fast when it took less than this fraction of the timeout


class WriteSizer:
    """Lines per write request and the request timeout, adapted to how InfluxDB answers (see the module doc).

    Both figures are published on `metrics` (a `WriterMetrics` of its own unless given).
    """

    def __init__(
        self,
        *,
        max_lines: int,
        base_timeout_s: float,
        max_timeout_s: float,
        min_lines: int = 100,
        metrics: WriterMetrics | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else WriterMetrics()
        self.max_lines = max_lines
        self.min_lines = min(min_lines, max_lines)
        self.base_timeout_s = base_timeout_s
        self.max_timeout_s = max(max_timeout_s, base_timeout_s)
        self.lines = max_lines
        self.timeout_s = base_timeout_s
        self._fast = 0
        self._publish()

    def timed_out(self) -> None:
        self._fast = 0
        self.lines = max(self.min_lines, self.lines // 2)
        self.timeout_s = min(self.max_timeout_s, self.timeout_s * 2)
        self.metrics.write_timeouts.inc()
        self._publish()

    def succeeded(self, seconds: float) -> None:
        if seconds >= self.timeout_s * FAST_FRACTION:
            self._fast = 0
            return
        self._fast += 1
        if self._fast < GROW_AFTER or (self.lines == self.max_lines and self.timeout_s == self.base_timeout_s):
            return
        self._fast = 0
        self.lines = min(self.max_lines, self.lines * 2)
        self.timeout_s = max(self.base_timeout_s, self.timeout_s / 2)
        self._publish()

    def _publish(self) -> None:
        self.metrics.write_lines_target.set(self.lines)
        self.metrics.write_timeout_seconds.set(self.timeout_s)


def write_sizer(settings: WriterSettings, metrics: WriterMetrics | None = None) -> WriteSizer:
    """The sizer of a writer: from ``batch_lines`` and ``influx.timeout_ms`` up or down to its two bounds."""
    options = settings.influx_writer
    return WriteSizer(
        max_lines=options.batch_lines,
        base_timeout_s=settings.influx.timeout_ms / 1000,
        max_timeout_s=options.max_write_timeout_ms / 1000,
        min_lines=options.min_write_lines,
        metrics=metrics,
    )

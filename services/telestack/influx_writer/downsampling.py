"""Downsampling scheduled by telestack: one Flux ``to()`` query per closed window, one at a time, resumable.

Replaces the InfluxDB task of earlier versions, whose runs InfluxDB OSS 2.7 starts every minute whether or not
the previous one has ended (it ignores ``concurrency``): with a slow disk they piled up (16-19 at once).

- **Never overlaps itself**: `Downsampler` runs its queries one after the other in one thread, and the next
  pass starts only after the last query has answered. Run one ``telestack downsample`` per raw bucket (the
  compose file and the demo run one).
- **Cheap as data grows**: a query reads one window of raw data (``storage.downsample_window``), whatever the
  bucket holds. A window is first aggregated ``downsample_offset`` after its end.
- **Watermark, kept durably**: after each new window, a point ``telestack_downsample until_s=<end>`` goes to the
  downsampled bucket; a restarted downsampler resumes there (catching up at most ``downsample_catchup``;
  with no watermark at all it starts ``downsample_lookback`` back).
- **Late data**: every window is aggregated a second time ``downsample_late_windows`` windows later, so a point
  arriving up to ``late_windows x window + offset`` after its window's end (1 m x 5 + 30 s by default) is in the
  downsampled bucket. A point later than that stays in the raw bucket only, until ``telestack downsample
  --redo START STOP`` aggregates that range again. Aggregating a window again overwrites its points (same series,
  same time), so a second pass never doubles anything.
- **Bounded retries**: while InfluxDB is down or slow, the same window is retried with capped exponential backoff
  (the downsampler waits for InfluxDB, as the writer does); a window InfluxDB refuses (a field whose type changed,
  a permission) is tried ``max_window_attempts`` times, then skipped with an error log and a metric.
- **Pushed down to the storage engine**: each aggregate (mean, min, max, count) reads the window through an
  equality filter on the numeric (measurement, field) pairs, which InfluxDB computes in its storage engine. Which
  pairs are numeric is learnt from a pushed-down ``first()`` per series (one row per series) in the same request,
  and remembered: a numeric field not seen before costs one more query of its window. Strings and booleans are
  never aggregated (a field that is a string in one measurement and a number in another is aggregated where it
  is a number). A field whose type changed (a new shard, usually a new day) makes its window's first query
  refused once (a pushed-down mean of strings): the pairs are forgotten, and the retry looks again first.
  Earlier versions filtered every row with ``types.isNumeric``, which kept the aggregation in Flux:
  on the 30-minute demo (~390,000 points a minute, loaded 2-core machine) one window took over 300 s. On a
  demo-sized window written to the test InfluxDB 2.7 (400,400 points in 550 series, 4 measurements, a string
  field in 2; 2026-11-30, machine shared with a CI run, noisy figures), the per-row query took 35-46 s (3 runs)
  and this one 0.9-2.2 s (9 runs; same data, same server, same points written; Flux's profiler shows 5
  ``readWindowAggregateSource`` operators and no Flux-side filter or window).

>>> plan_windows(watermark_s=600, now_s=755, window_s=60, offset_s=30, late_windows=5)
([300, 360], [600, 660])
>>> plan_windows(watermark_s=720, now_s=755, window_s=60, offset_s=30, late_windows=5)
([], [])
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from telestack.core.annotated_csv import iter_rows
from telestack.core.backoff import Backoff
from telestack.core.durations import duration_seconds
from telestack.core.errors import InfluxError, InfluxUnavailableError
from telestack.core.influx_http import InfluxHttp
from telestack.core.metrics import ServiceMetrics
from telestack.core.runtime import Check, Logger, Shutdown, get_logger
from telestack.core.service import ServiceBase
from telestack.influx_writer.settings import StorageOptions

__all__ = [
    "AGGREGATES",
    "WATERMARK_MEASUREMENT",
    "DownsampleMetrics",
    "Downsampler",
    "PassResult",
    "plan_windows",
    "read_series_types",
    "series_flux",
    "window_flux",
]

# Field suffix → Flux aggregate. `temperature` becomes `temperature_mean`, `temperature_min`, ...
AGGREGATES = {"_mean": "mean", "_min": "min", "_max": "max", "_count": "count"}
WATERMARK_MEASUREMENT = "telestack_downsample"
WATERMARK_FIELD = "until_s"
SERIES_RESULT = "series"  # the yield naming each series' first point (its type)
AGGREGATES_RESULT = "aggregates"
NUMERIC_TYPES = frozenset({"double", "long", "unsignedLong"})  # what `types.isNumeric` accepts

_PREFIX = "telestack_downsample"


class DownsampleMetrics(ServiceMetrics):
    """One downsampler's metrics, on its own registry (or the one given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.windows = Counter(
            f"{_PREFIX}_windows", "windows aggregated, by pass (first, late, redo)", ["pass"], registry=r
        )
        self.skipped = Counter(
            f"{_PREFIX}_windows_skipped",
            "windows InfluxDB refused max_window_attempts times, left raw-only",
            registry=r,
        )
        self.failures = Counter(
            f"{_PREFIX}_query_failures",
            "failed downsampling queries by kind (unavailable, refused)",
            ["kind"],
            registry=r,
        )
        self.query_seconds = Histogram(
            f"{_PREFIX}_query_seconds",
            "duration of one window's aggregation query",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.watermark = Gauge(
            f"{_PREFIX}_watermark_timestamp_seconds", "end of the newest window aggregated (Unix time)", registry=r
        )
        self.behind = Gauge(f"{_PREFIX}_behind_windows", "closed windows not aggregated yet", registry=r)
        self.in_flight = Gauge(
            f"{_PREFIX}_queries_in_flight", "downsampling queries running now (never more than 1)", registry=r
        )


def _flux_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def series_flux(*, raw_bucket: str, start_s: int, window_s: int) -> str:
    """The first point of every series in a window (pushed down to the storage engine: one row per series).

    Its ``_value`` column's type tells numeric (measurement, field) pairs from strings and booleans, without
    looking at every row.
    """
    return (
        f"from(bucket: {_flux_string(raw_bucket)})\n"
        f"    |> range(start: {_rfc3339(start_s)}, stop: {_rfc3339(start_s + window_s)})\n"
        "    |> first()\n"
        f'    |> yield(name: "{SERIES_RESULT}")\n'
    )


def _pairs_predicate(pairs: Iterable[tuple[str, str]]) -> str:
    """``r._measurement == m and (r._field == f or ...) or ...``: equality only, so InfluxDB pushes it down."""
    by_measurement: dict[str, list[str]] = {}
    for measurement, field_key in sorted(set(pairs)):
        by_measurement.setdefault(measurement, []).append(field_key)
    return " or ".join(
        f"(r._measurement == {_flux_string(measurement)} and ("
        + " or ".join(f"r._field == {_flux_string(f)}" for f in fields)
        + "))"
        for measurement, fields in by_measurement.items()
    )


def window_flux(
    *,
    raw_bucket: str,
    downsampled_bucket: str,
    start_s: int,
    window_s: int,
    pairs: Iterable[tuple[str, str]] = (),
    with_series: bool = False,
) -> str:
    """The Flux query that aggregates one window ``[start_s, start_s + window_s)`` into the downsampled bucket.

    Mean, min, max and count of the numeric fields `pairs` ((measurement, field)), per series; points carry the
    window's start time. Each aggregate reads the window with an equality filter of its own, so InfluxDB computes
    it in its storage engine (a per-row type filter would make Flux aggregate every row itself). With
    `with_series`, the same request also returns `series_flux` (the next windows' numeric fields). ``to()``
    names no organization: it writes into the query's own (a token scoped to buckets cannot look one up by name).

    >>> flux = window_flux(raw_bucket="raw", downsampled_bucket="ds", start_s=60, window_s=60, pairs=[("m", "f")])
    >>> "range(start: 1970-01-01T00:01:00Z, stop: 1970-01-01T00:02:00Z)" in flux
    True
    >>> 'filter(fn: (r) => (r._measurement == "m" and (r._field == "f")))' in flux
    True
    """
    predicate = _pairs_predicate(pairs)
    parts = []
    if predicate:
        branches = ",\n".join(
            f"        aggregate(fn: {fn}, suffix: {_flux_string(suffix)})" for suffix, fn in AGGREGATES.items()
        )
        parts.append(
            f"""aggregate = (fn, suffix) => from(bucket: {_flux_string(raw_bucket)})
    |> range(start: {_rfc3339(start_s)}, stop: {_rfc3339(start_s + window_s)})
    |> filter(fn: (r) => {predicate})
    |> aggregateWindow(every: {window_s}s, fn: fn, createEmpty: false, timeSrc: "_start")
    |> map(fn: (r) => ({{r with _field: r._field + suffix}}))

union(
    tables: [
{branches},
    ],
)
    |> to(bucket: {_flux_string(downsampled_bucket)})
    |> yield(name: "{AGGREGATES_RESULT}")
"""
        )
    if with_series or not predicate:
        parts.append(series_flux(raw_bucket=raw_bucket, start_s=start_s, window_s=window_s))
    return "\n".join(parts)


def read_series_types(rows: Iterable[list[str]]) -> dict[tuple[str, str], bool]:
    """(measurement, field) → numeric (every series of it a float, integer or unsigned), from `series_flux` rows.

    Other results of the same response (the aggregates written) are skipped. An error table (a query that
    failed after its first rows were sent, with status 200) raises `InfluxQueryError`, as an error status does.

    >>> read_series_types([["#datatype", "string", "string"], ["", "error", "reference"], ["", "boom", ""]])
    Traceback (most recent call last):
    ...
    telestack.core.errors.InfluxQueryError: InfluxDB could not run the query: boom
    """
    numeric: dict[tuple[str, str], bool] = {}
    for table, values in iter_rows(rows):
        if table.result == SERIES_RESULT:
            cells = dict(zip(table.columns, values, strict=True))
            pair = (cells["_measurement"], cells["_field"])
            numeric[pair] = numeric.get(pair, True) and table.datatypes[table.columns.index("_value")] in NUMERIC_TYPES
    return numeric


def plan_windows(
    *, watermark_s: int, now_s: float, window_s: int, offset_s: int, late_windows: int, first_s: int | None = None
) -> tuple[list[int], list[int]]:
    """(second-pass windows, new windows) due at `now_s`, as window start times, oldest first.

    New windows: from the watermark (the end of the newest window aggregated) to the last window that ended at
    least `offset_s` ago. Second pass: the windows aggregated before this pass that fall `late_windows` windows
    behind the new end (none before `first_s`, the first window ever aggregated, when known). Nothing is due
    (both empty) until a new window has closed.
    """
    closed_end = int((now_s - offset_s) // window_s) * window_s
    if closed_end <= watermark_s:
        return [], []
    new = list(range(watermark_s, closed_end, window_s))
    late_start = watermark_s - late_windows * window_s
    if first_s is not None:
        late_start = max(late_start, first_s)
    late = list(range(late_start, min(watermark_s, closed_end - late_windows * window_s), window_s))
    return late, new


@dataclass
class PassResult:
    """What one pass did: windows aggregated (by pass), skipped, and the watermark after it."""

    late: list[int] = field(default_factory=list)
    new: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    watermark_s: int = 0


class Downsampler(ServiceBase):
    """Aggregates closed windows of the raw bucket into the downsampled bucket, one query at a time.

    `clock` gives the current Unix time (tests pass a fixed one); `sleep(seconds) -> bool` waits and returns True
    when the downsampler should stop (a `Shutdown`'s ``wait``).
    """

    name = "downsample"

    def __init__(
        self,
        api: InfluxHttp,
        *,
        raw_bucket: str,
        storage: StorageOptions,
        backoff: Backoff,
        max_window_attempts: int = 3,
        query_timeout_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], bool] | None = None,
        log: Logger | None = None,
        metrics: DownsampleMetrics | None = None,
    ) -> None:
        self.api = api
        self.metrics = metrics if metrics is not None else DownsampleMetrics()
        self.raw_bucket = raw_bucket
        self.storage = storage
        self.window_s = duration_seconds(storage.downsample_window)
        self.offset_s = duration_seconds(storage.downsample_offset) if storage.downsample_offset != "0s" else 0
        self.every_s = duration_seconds(storage.downsample_every)
        self.lookback_s = duration_seconds(storage.downsample_lookback)
        self.catchup_s = duration_seconds(storage.downsample_catchup)
        self.late_windows = storage.downsample_late_windows
        self.backoff = backoff
        self.max_window_attempts = max_window_attempts
        self.query_timeout_s = query_timeout_s
        self.clock = clock
        self._given_sleep = sleep  # a test's; else `run` waits on its shutdown, a one-shot pass on the clock
        self._sleep = sleep or _plain_sleep
        self.log: Logger = log if log is not None else get_logger("downsample")
        self.watermark_s: int | None = None  # read from InfluxDB on the first pass
        self.first_s: int | None = None  # the first window ever, when no watermark was found (nothing before it)
        self.last_error: str | None = None
        # (measurement, field) pairs seen numeric: aggregated in every window (a pair absent from one costs nothing)
        self.numeric_pairs: set[tuple[str, str]] = set()
        self._should_stop: Callable[[], bool] = lambda: False  # checked between windows (a long catch-up)

    # --- the loop -------------------------------------------------------------------------------------------

    def run(self, shutdown: Shutdown) -> int:
        """Pass after pass until `shutdown` is set: each one waits for the previous one to end (no overlap)."""
        self._should_stop = shutdown.is_set
        self._sleep = self._given_sleep or shutdown.wait
        while not shutdown.is_set():
            try:
                self.run_pass()
            except _Stopped:
                return 0
            if self._sleep(self._until_next_window()):
                return 0
        return 0

    def run_pass(self) -> PassResult:
        """Aggregate every window due now (second passes, then new windows, oldest first); return what was done."""
        if self.watermark_s is None:
            self.watermark_s = self._retry(self.read_watermark)
        now = self.clock()
        late, new = plan_windows(
            watermark_s=self.watermark_s,
            now_s=now,
            window_s=self.window_s,
            offset_s=self.offset_s,
            late_windows=self.late_windows,
            first_s=self.first_s,
        )
        result = PassResult(watermark_s=self.watermark_s)
        self.metrics.behind.set(len(new))
        for start in late:
            if self._should_stop():
                raise _Stopped
            if self._aggregate(start):
                result.late.append(start)
                self.metrics.windows.labels("late").inc()
            else:
                result.skipped.append(start)
        for start in new:
            if self._should_stop():
                raise _Stopped
            if self._aggregate(start):
                result.new.append(start)
                self.metrics.windows.labels("first").inc()
            else:
                result.skipped.append(start)
            end = start + self.window_s
            self._retry(functools.partial(self._write_watermark, end))
            self.watermark_s = result.watermark_s = end
            self.metrics.watermark.set(end)
            self.metrics.behind.dec()
        return result

    def redo(self, start_s: int, stop_s: int) -> list[int]:
        """Aggregate every window overlapping ``[start_s, stop_s)`` again (very late data); the watermark stays."""
        first = start_s // self.window_s * self.window_s
        done = []
        for start in range(first, stop_s, self.window_s):
            if self._aggregate(start):
                done.append(start)
                self.metrics.windows.labels("redo").inc()
        return done

    # --- the watermark --------------------------------------------------------------------------------------

    def read_watermark(self) -> int:
        """End of the newest window aggregated, from the downsampled bucket; where to start without one."""
        now = int(self.clock())
        horizon = (now - self.catchup_s) // self.window_s * self.window_s
        flux = (
            f"from(bucket: {_flux_string(self.storage.downsampled_bucket)})\n"
            f"    |> range(start: {_rfc3339(horizon)}, stop: {_rfc3339(now + self.window_s)})\n"
            f'    |> filter(fn: (r) => r._measurement == "{WATERMARK_MEASUREMENT}")\n'
            f'    |> filter(fn: (r) => r._field == "{WATERMARK_FIELD}")\n'
            "    |> last()\n"
        )
        found: int | None = None
        with self.api.query_csv(flux, timeout_s=self.query_timeout_s) as rows:
            for table, values in iter_rows(rows):
                found = int(values[table.columns.index("_value")])
        if found is not None:
            watermark = max(found, horizon)
        else:
            watermark = self.first_s = (now - self.lookback_s) // self.window_s * self.window_s
        self.metrics.watermark.set(watermark)
        self.log.info("downsampling resumes", watermark=_rfc3339(watermark), from_marker=found is not None)
        return watermark

    def _write_watermark(self, end_s: int) -> None:
        line = f"{WATERMARK_MEASUREMENT} {WATERMARK_FIELD}={end_s}i {end_s * 1_000_000_000}"
        self.api.write(line.encode(), bucket=self.storage.downsampled_bucket, timeout_s=self.query_timeout_s)

    # --- one window -----------------------------------------------------------------------------------------

    def _aggregate(self, start_s: int) -> bool:
        """One window, retried while InfluxDB is unavailable; False when refused every attempt.

        Usually one query: the numeric fields known so far, and each series' type in this window. A numeric
        field not known yet (the first window, a new field) takes a second query of that window for it.
        """
        refused = 0
        attempt = 0
        while True:
            started = time.monotonic()
            self.metrics.in_flight.inc()
            try:
                self._aggregate_once(start_s)
            except InfluxUnavailableError as exc:
                self.metrics.failures.labels("unavailable").inc()
                self._failed(exc, start_s)
                if self._sleep(self.backoff.delay(attempt, exc.retry_after_s)):
                    raise _Stopped from exc
                attempt += 1
                continue
            except InfluxError as exc:
                self.metrics.failures.labels("refused").inc()
                self._failed(exc, start_s)
                self.numeric_pairs.clear()  # a field whose type changed: the next attempt looks again first
                refused += 1
                if refused >= self.max_window_attempts:
                    self.metrics.skipped.inc()
                    self.log.error(
                        "window skipped: InfluxDB refused its aggregation",
                        window=_rfc3339(start_s),
                        attempts=refused,
                        error=str(exc),
                    )
                    return False
                if self._sleep(self.backoff.delay(attempt)):
                    raise _Stopped from exc
                attempt += 1
                continue
            finally:
                self.metrics.in_flight.dec()
            self.metrics.query_seconds.observe(time.monotonic() - started)
            self.last_error = None
            return True

    def _aggregate_once(self, start_s: int) -> None:
        known = set(self.numeric_pairs)
        types = self._query_window(start_s, known, with_series=True)
        found = {pair for pair, numeric in types.items() if numeric}
        self.numeric_pairs.difference_update(pair for pair, numeric in types.items() if not numeric)
        if found - known:
            self._query_window(start_s, found - known, with_series=False)
            self.numeric_pairs.update(found)

    def _query_window(
        self, start_s: int, pairs: set[tuple[str, str]], *, with_series: bool
    ) -> dict[tuple[str, str], bool]:
        flux = window_flux(
            raw_bucket=self.raw_bucket,
            downsampled_bucket=self.storage.downsampled_bucket,
            start_s=start_s,
            window_s=self.window_s,
            pairs=pairs,
            with_series=with_series,
        )
        with self.api.query_csv(flux, timeout_s=self.query_timeout_s) as rows:
            return read_series_types(rows)

    def _retry(self, call: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            try:
                result = call()
            except InfluxError as exc:
                self.metrics.failures.labels(
                    "unavailable" if isinstance(exc, InfluxUnavailableError) else "refused"
                ).inc()
                self._failed(exc, None)
                retry_after = exc.retry_after_s if isinstance(exc, InfluxUnavailableError) else None
                if self._sleep(self.backoff.delay(attempt, retry_after)):
                    raise _Stopped from exc
                attempt += 1
            else:
                self.last_error = None
                return result

    def _failed(self, exc: InfluxError, start_s: int | None) -> None:
        self.last_error = str(exc)
        self.log.warning(
            "downsampling query failed",
            window=_rfc3339(start_s) if start_s is not None else None,
            error=str(exc),
        )

    def _until_next_window(self) -> float:
        """Seconds until the next window is due, looking again at least every ``downsample_every``."""
        now = self.clock()
        next_due = ((now - self.offset_s) // self.window_s + 1) * self.window_s + self.offset_s
        return max(0.5, min(float(self.every_s), next_due - now))

    def health(self) -> list[Check]:
        return [Check.of("influx", self.influx_health)]

    def _close(self) -> None:
        self.api.close()

    def influx_health(self) -> tuple[bool, str]:
        if self.last_error is not None:
            return False, self.last_error
        if self.watermark_s is None:
            return True, "starting"
        return True, f"aggregated up to {_rfc3339(self.watermark_s)}"


class _Stopped(Exception):
    """Shutdown was asked while waiting to retry."""


def _plain_sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False

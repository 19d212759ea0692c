"""The write side of the influx-writer: threads that write batches to InfluxDB, `concurrency` requests at once.

For each batch it returns a `FlushResult` saying whether the batch's offsets may be stored, in the order the
batches were submitted whatever order their writes end in (a batch's offsets are stored only once every batch
before it is done too):

- written (2xx): done;
- 5xx, 429, timeout, connection refused: retried with capped backoff (honouring Retry-After) until it
  succeeds; meanwhile the batch stays in flight, so the consumer pauses and nothing is stored;
- a batch is written in requests of at most `WriteSizer.lines` lines, with `WriteSizer.timeout_s`: a timeout
  halves the one and doubles the other, fast writes bring them back (`telestack.influx_writer.adaptive`), so
  a slow InfluxDB gets smaller requests it can finish instead of the same large one again and again;
- 400/413/422: the batch is split to find the refused records (then, inside a multi-line record, the
  refused lines); they go to the DLQ with InfluxDB's reason and are done once Kafka confirmed them;
- 401/403: fatal; the result carries the error and the service stops without storing the batch;
- shutdown while retrying: the batch is abandoned (not done), and will be read again by the next owner.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from telestack.core.backoff import Backoff
from telestack.core.errors import (
    InfluxAuthError,
    InfluxRejectedError,
    InfluxUnavailableError,
    KafkaError,
    TelestackError,
)
from telestack.core.kafka import Record
from telestack.core.lineproto import iter_lines
from telestack.core.runtime import Logger
from telestack.influx_writer.adaptive import WriteSizer
from telestack.influx_writer.batcher import Batch
from telestack.influx_writer.dead_letters import DeadLetter
from telestack.influx_writer.errors import DeadLetterError
from telestack.influx_writer.isolation import isolate_rejected
from telestack.influx_writer.metrics import WriterMetrics

__all__ = ["DeadLetterSink", "FlushResult", "Flusher", "LineSink", "WriteHealth"]


class LineSink(Protocol):
    """Where line protocol goes (`InfluxHttp`, or a fake in unit tests)."""

    def write(self, body: bytes, *, timeout_s: float | None = None) -> None: ...


class DeadLetterSink(Protocol):
    def send(self, letters: Sequence[DeadLetter]) -> None: ...


class Abandoned(Exception):
    """The flusher was stopped while a batch was still being retried."""


class _Resize(Exception):
    """A request timed out and is larger than the new request size: split it, then write the parts."""


@dataclass(slots=True)
class FlushResult:
    batch: Batch
    done: bool  # offsets may be stored
    lines_written: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    error: TelestackError | None = None  # fatal: the service must stop


@dataclass(slots=True)
class WriteHealth:
    """What /healthz reports about InfluxDB writes (read from another thread; plain assignments only)."""

    failing_since: float | None = None
    last_error: str | None = None
    last_success: float | None = None

    def probe(self) -> tuple[bool, str]:
        if self.failing_since is None:
            return True, "writing" if self.last_success else "no write yet"
        return False, f"writes failing for {time.monotonic() - self.failing_since:.0f} s: {self.last_error}"


class Flusher:
    """Writes submitted batches on `concurrency` threads; results come back, in submission order, via `results`."""

    def __init__(
        self,
        sink: LineSink,
        dead_letters: DeadLetterSink,
        backoff: Backoff,
        *,
        max_in_flight: int,
        log: Logger,
        concurrency: int = 1,
        on_done: Callable[[FlushResult], None] | None = None,
        sizer: WriteSizer | None = None,
        metrics: WriterMetrics | None = None,
    ) -> None:
        self.sink = sink
        # The sizer's metrics by default: the writer's figures on one registry.
        self.metrics = metrics if metrics is not None else sizer.metrics if sizer is not None else WriterMetrics()
        # Without a sizer: one request per batch, with the sink's own timeout.
        self.sizer = sizer
        self.dead_letters = dead_letters
        self.backoff = backoff
        self.max_in_flight = max_in_flight
        self.log = log
        self.health = WriteHealth()
        self._inbox: queue.Queue[tuple[int, Batch] | None] = queue.Queue()
        self._results: queue.Queue[FlushResult] = queue.Queue()
        self._in_flight = 0
        self._submitted = 0  # sequence number of the next batch submitted
        self._released = 0  # ... and of the next result handed out: the ones after it wait in _finished
        self._finished: dict[int, FlushResult] = {}
        self._held_back = False  # a batch was not done: none after it is (see _release)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._failed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"influx-flusher-{i}", daemon=True) for i in range(concurrency)
        ]

    # --- the consumer side ----------------------------------------------------------------------------

    def start(self) -> Flusher:
        for thread in self._threads:
            thread.start()
        return self

    def submit(self, batch: Batch) -> None:
        with self._lock:
            seq = self._submitted
            self._submitted += 1
            self._in_flight += 1
            self.metrics.in_flight_batches.set(self._in_flight)
        self._inbox.put((seq, batch))

    def full(self) -> bool:
        return self._in_flight >= self.max_in_flight

    def in_flight(self) -> int:
        return self._in_flight

    def results(self, timeout_s: float = 0) -> list[FlushResult]:
        """Results ready now (waiting up to `timeout_s` for the first one)."""
        out: list[FlushResult] = []
        try:
            out.append(self._results.get(timeout=timeout_s) if timeout_s > 0 else self._results.get_nowait())
            while True:
                out.append(self._results.get_nowait())
        except queue.Empty:
            pass
        return out

    def stop(self, timeout_s: float = 5) -> None:
        """Abandon retries and end the threads; results of abandoned batches say done=False."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for _ in self._threads:
            self._inbox.put(None)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # --- the thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            seq, batch = item
            if self._stop.is_set() or self._failed:
                result = FlushResult(batch, done=False)
            else:
                result = self._flush(batch)
                if result.error is not None:
                    self._failed = True  # later batches are not written: the service is stopping
            self._release(seq, result)

    def _release(self, seq: int, result: FlushResult) -> None:
        """Hand out `result` and those after it that were waiting for it: in submission order.

        After a batch that is not done (abandoned on stop, or a fatal error) no later one is done either, even if
        written: storing its offsets would pass the records of the one before it (written again on replay).
        """
        with self._lock:
            self._finished[seq] = result
            while self._released in self._finished:
                ready = self._finished.pop(self._released)
                if not ready.done:
                    self._held_back = True
                elif self._held_back:
                    ready = FlushResult(ready.batch, done=False)
                self._results.put(ready)
                self._released += 1
                self._in_flight -= 1
            self.metrics.in_flight_batches.set(self._in_flight)

    def _flush(self, batch: Batch) -> FlushResult:
        try:
            letters: list[DeadLetter] = []
            records, start = batch.records, 0
            while start < len(records):
                end = self._chunk_end(records, start)
                chunk = records[start:end]
                try:
                    try:
                        self._write(_join(rec.value for rec in chunk), splittable=len(chunk) > 1)
                    except InfluxRejectedError as exc:
                        letters += self._isolate(chunk, exc)
                except _Resize:
                    continue  # the same records again, in smaller requests
                start = end
            self._send_dead_letters(letters)
            return self._done(batch, letters)
        except Abandoned:
            return FlushResult(batch, done=False)
        except InfluxAuthError as exc:
            self.metrics.write_failures.labels("auth").inc()
            self.health.failing_since = self.health.failing_since or time.monotonic()
            self.health.last_error = str(exc)
            return FlushResult(batch, done=False, error=exc)

    def _chunk_end(self, records: list[Record], start: int) -> int:
        """End of the request that starts at `start`: at most `sizer.lines` lines (a larger record alone)."""
        if self.sizer is None:
            return len(records)
        lines, end = 0, start
        while end < len(records):
            count = _line_count(records[end].value)
            if end > start and lines + count > self.sizer.lines:
                break
            lines += count
            end += 1
        return end

    def _done(self, batch: Batch, letters: list[DeadLetter]) -> FlushResult:
        dead_lines = sum(_line_count(letter.value) for letter in letters)
        written = batch.lines - dead_lines
        metrics = self.metrics
        metrics.lines_written.inc(written)
        metrics.batches_written.inc()
        metrics.dlq_records.inc(len(letters))
        return FlushResult(batch, done=True, lines_written=written, dead_letters=letters)

    def _write(self, body: bytes, *, splittable: bool = False) -> None:
        """Write, retrying transient failures until success; raises refusals, auth errors and `Abandoned`.

        `splittable`: on a timeout that leaves `body` larger than the new request size, raise `_Resize`
        instead of retrying it whole.
        """
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                if self.sizer is None:
                    self.sink.write(body)
                else:
                    self.sink.write(body, timeout_s=self.sizer.timeout_s)
            except InfluxUnavailableError as exc:
                self.metrics.write_failures.labels("unavailable").inc()
                if exc.timed_out and self.sizer is not None:
                    self.sizer.timed_out()
                    if splittable and _line_count(body) > self.sizer.lines:
                        raise _Resize from exc  # written again in smaller requests
                delay = self.backoff.delay(attempt, exc.retry_after_s)
                if self.health.failing_since is None:
                    self.health.failing_since = time.monotonic()
                    self.log.warning("influx_write_failing", error=str(exc), retry_in_s=delay)
                self.health.last_error = str(exc)
                attempt += 1
                if self._stop.wait(delay):
                    raise Abandoned from exc
                continue
            except InfluxRejectedError:
                self.metrics.write_failures.labels("rejected").inc()
                raise
            elapsed = time.perf_counter() - started
            self.metrics.write_seconds.observe(elapsed)
            if self.sizer is not None:
                self.sizer.succeeded(elapsed)
            now = time.time()
            self.metrics.last_write_timestamp.set(now)
            if self.health.failing_since is not None:
                self.log.info(
                    "influx_write_recovered",
                    after_s=round(time.monotonic() - self.health.failing_since, 1),
                    attempts=attempt + 1,
                )
                self.health.failing_since = None
                self.health.last_error = None
            self.health.last_success = now
            return

    def _attempt(self, body: bytes) -> tuple[str, int] | None:
        """None when written, else (InfluxDB's reason, status) for a refusal."""
        try:
            self._write(body)
        except InfluxRejectedError as exc:
            return exc.reason, exc.status or 400
        return None

    def _isolate(self, records: list[Record], first: InfluxRejectedError) -> list[DeadLetter]:
        statuses: dict[str, int] = {first.reason: first.status or 400}

        def write_records(chunk: Sequence[Record]) -> str | None:
            return self._reason(_join(rec.value for rec in chunk), statuses)

        letters: list[DeadLetter] = []
        for record, reason in isolate_rejected(records, write_records, first.reason):
            lines = _lines_of(record.value)
            if len(lines) <= 1:
                letters.append(DeadLetter(record, record.value, reason, statuses.get(reason, 400)))
                continue
            # A multi-line record: keep its good lines, dead-letter only the refused ones.
            refused = isolate_rejected(lines, lambda chunk: self._reason(_join(chunk), statuses), reason)
            letters.extend(DeadLetter(record, line, why, statuses.get(why, 400)) for line, why in refused)
        self.log.warning(
            "influx_rejected_lines",
            records=len(records),
            dead_letters=len(letters),
            first_reason=letters[0].reason if letters else first.reason,
        )
        return letters

    def _reason(self, body: bytes, statuses: dict[str, int]) -> str | None:
        refused = self._attempt(body)
        if refused is None:
            return None
        reason, status = refused
        statuses[reason] = status
        return reason

    def _send_dead_letters(self, letters: list[DeadLetter]) -> None:
        attempt = 0
        while letters:
            try:
                self.dead_letters.send(letters)
                return
            except (DeadLetterError, KafkaError) as exc:
                delay = self.backoff.delay(attempt)
                self.log.warning("dlq_send_failed", error=str(exc), retry_in_s=delay)
                attempt += 1
                if self._stop.wait(delay):
                    raise Abandoned from exc


def _join(values: Any) -> bytes:
    return b"\n".join(values)


def _line_count(value: bytes) -> int:
    return len(_lines_of(value))


def _lines_of(value: bytes) -> list[bytes]:
    """The lines of a record as InfluxDB reads them: a newline inside a quoted string field stays in its line.

    Bytes that are not UTF-8 survive the round trip (surrogateescape), so InfluxDB sees and names them.
    """
    text = value.decode("utf-8", "surrogateescape")
    return [line.encode("utf-8", "surrogateescape") for _, line in iter_lines(text)]

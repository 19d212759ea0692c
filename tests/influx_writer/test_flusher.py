"""The write thread against fake sinks: retries, isolation of refused records and lines, fatal auth errors."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import structlog

from telestack.core.backoff import Backoff
from telestack.core.errors import InfluxAuthError, InfluxRejectedError, InfluxUnavailableError
from telestack.core.kafka import Record
from telestack.influx_writer.batcher import Batch
from telestack.influx_writer.dead_letters import DeadLetter, dead_letter_headers
from telestack.influx_writer.flusher import Flusher, FlushResult
from tests.polling import wait_until

LOG = structlog.get_logger("test")


class FakeInflux:
    """Refuses bodies holding b"BAD" (400, naming the line); fails `outages` times first (503)."""

    def __init__(self, outages: int = 0, auth_error: bool = False) -> None:
        self.outages = outages
        self.auth_error = auth_error
        self.lines: list[bytes] = []
        self.requests = 0

    def write(self, body: bytes) -> None:
        self.requests += 1
        if self.auth_error:
            raise InfluxAuthError("InfluxDB 401 (token refused): unauthorized access", status=401)
        if self.outages:
            self.outages -= 1
            raise InfluxUnavailableError("InfluxDB answered 503: busy", status=503, retry_after_s=0.001)
        bad = [line for line in body.split(b"\n") if b"BAD" in line]
        if bad:
            raise InfluxRejectedError(f"unable to parse '{bad[0].decode()}': invalid", status=400)
        self.lines.extend(line for line in body.split(b"\n") if line)


class FakeDlq:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def send(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


def _batch(values: list[bytes]) -> Batch:
    batch = Batch()
    for offset, value in enumerate(values):
        batch.add(Record("telemetry", offset % 2, offset, b"dev", value, (), 1_700_000_000_000), now=0.0)
    return batch


def _flush(influx: FakeInflux, dlq: FakeDlq, batch: Batch) -> FlushResult:
    flusher = Flusher(influx, dlq, Backoff(0.001, 0.002), max_in_flight=2, log=LOG).start()
    flusher.submit(batch)
    (result,) = flusher.results(timeout_s=10)
    flusher.stop()
    assert flusher.in_flight() == 0
    return result


def test_transient_failures_are_retried_until_written() -> None:
    influx, dlq = FakeInflux(outages=5), FakeDlq()
    result = _flush(influx, dlq, _batch([b"m v=1 1", b"m v=2 2"]))
    assert result.done and result.error is None
    assert influx.lines == [b"m v=1 1", b"m v=2 2"]
    assert influx.requests == 6


def test_refused_records_and_lines_go_to_the_dlq_and_the_rest_is_written() -> None:
    influx, dlq = FakeInflux(), FakeDlq()
    values = [f"m v={i} {i}".encode() for i in range(20)]
    values[3] = b"m BAD 3"
    values[11] = b"m v=11 11\nm BAD 11\nm v=110 110"  # one bad line inside a multi-line record
    result = _flush(influx, dlq, _batch(values))
    assert result.done
    assert [(letter.record.offset, letter.value) for letter in dlq.letters] == [(3, b"m BAD 3"), (11, b"m BAD 11")]
    assert dlq.letters[0].reason == "unable to parse 'm BAD 3': invalid"
    assert set(influx.lines) == {line for v in values for line in v.split(b"\n") if b"BAD" not in line}
    assert result.lines_written == 20


def test_auth_error_is_fatal_and_not_done() -> None:
    influx, dlq = FakeInflux(auth_error=True), FakeDlq()
    result = _flush(influx, dlq, _batch([b"m v=1 1"]))
    assert not result.done
    assert isinstance(result.error, InfluxAuthError)
    assert influx.requests == 1


def test_stop_while_retrying_abandons_the_batch() -> None:
    influx = FakeInflux(outages=10**9)
    flusher = Flusher(influx, FakeDlq(), Backoff(0.01, 0.01), max_in_flight=1, log=LOG).start()
    flusher.submit(_batch([b"m v=1 1"]))
    assert flusher.full()
    wait_until(lambda: influx.requests >= 3, 5, interval_s=0.005, what="retries")
    healthy, detail = flusher.health.probe()
    assert not healthy and "503" in detail
    flusher.stop()
    (result,) = flusher.results(timeout_s=5)
    assert not result.done and result.error is None


def test_dead_letter_headers_name_the_source_and_reason() -> None:
    record = Record("telemetry", 2, 41, b"dev", b"m BAD", (), 1)
    headers = dict(dead_letter_headers(DeadLetter(record, b"m BAD", "unable to parse", 400)))
    assert headers == {
        "reason": "unable to parse",
        "influx.status": "400",
        "source.topic": "telemetry",
        "source.partition": "2",
        "source.offset": "41",
        "source.service": "influx-writer",
    }


class GatedInflux:
    """Writes bodies holding b"GATED" only once `gate` is set; counts the requests under way at once."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.lines: list[bytes] = []
        self.at_once = self.most_at_once = 0
        self._lock = threading.Lock()

    def write(self, body: bytes) -> None:
        with self._lock:
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            if b"GATED" in body and not self.gate.wait(10):
                raise InfluxUnavailableError("InfluxDB answered 503: gate closed", status=503, retry_after_s=0.001)
            with self._lock:
                self.lines.extend(line for line in body.split(b"\n") if line)
        finally:
            with self._lock:
                self.at_once -= 1


def test_concurrent_writes_report_results_in_submission_order() -> None:
    influx = GatedInflux()
    flusher = Flusher(influx, FakeDlq(), Backoff(0.001, 0.002), max_in_flight=4, log=LOG, concurrency=2).start()
    try:
        flusher.submit(_batch([b"m GATED=1 1"]))
        flusher.submit(_batch([b"m v=2 2"]))
        wait_until(lambda: b"m v=2 2" in influx.lines, 10, interval_s=0.005, what="the second batch written")
        assert influx.most_at_once == 2  # both requests were under way at once
        assert flusher.results() == []  # written, but the batch before it is not: its offsets wait
        assert flusher.in_flight() == 2
        influx.gate.set()
        results = wait_until(lambda: flusher.results(0.1) or None, 10, what="both results")
        if len(results) == 1:
            results += flusher.results(10)
        assert [r.batch.records[0].value for r in results] == [b"m GATED=1 1", b"m v=2 2"]
        assert all(r.done for r in results)
        assert flusher.in_flight() == 0
    finally:
        influx.gate.set()
        flusher.stop()


def test_no_batch_is_done_after_one_that_was_abandoned() -> None:
    """A later batch written while an earlier one is abandoned: storing its offsets would pass the earlier one."""
    influx = FakeInflux()
    gated = GatedInflux()

    def write(body: bytes) -> None:
        if b"STUCK" in body:
            raise InfluxUnavailableError("InfluxDB answered 503: busy", status=503, retry_after_s=0.001)
        gated.write(body)

    influx.write = write  # type: ignore[method-assign]
    flusher = Flusher(influx, FakeDlq(), Backoff(0.01, 0.01), max_in_flight=4, log=LOG, concurrency=2).start()
    flusher.submit(_batch([b"m STUCK=1 1"]))
    flusher.submit(_batch([b"m v=2 2"]))
    wait_until(lambda: b"m v=2 2" in gated.lines, 10, interval_s=0.005, what="the second batch written")
    flusher.stop()
    results = flusher.results(5)
    if len(results) == 1:
        results += flusher.results(5)
    assert [(r.batch.records[0].value, r.done) for r in results] == [(b"m STUCK=1 1", False), (b"m v=2 2", False)]

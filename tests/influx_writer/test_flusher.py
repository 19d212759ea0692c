"""The write thread against fake sinks: retries, isolation of refused records and lines, fatal auth errors."""

from __future__ import annotations

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

"""The writer on real Kafka and InfluxDB: commit after write, poison isolation, outages, redelivery."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import confluent_kafka
import pytest
from pydantic import SecretStr

from telestack.core.errors import InfluxAuthError
from telestack.core.settings import HttpSettings, InfluxSettings, KafkaSettings
from telestack.influx_writer.service import WriterService
from telestack.influx_writer.settings import WriterSettings
from telestack.native.servers import InfluxServer
from tests.harness import RunningService
from tests.influx_writer.conftest import (
    SlowProxy,
    committed_offsets,
    count_points,
    end_offsets,
    flux_rows,
    produce_lines,
)
from tests.polling import wait_until

StartWriter = Callable[[WriterSettings], RunningService[WriterService]]
BASE_NS = 1_700_000_000_000_000_000


def _records(start: int, count: int, per_record: int = 1, measurement: str = "m") -> list[bytes]:
    """`count` lines with distinct timestamps, `per_record` lines per Kafka record."""
    lines = [f"{measurement},dev=d{i % 5} v={i}i,x={i * 0.5} {BASE_NS + i * 1000}" for i in range(start, start + count)]
    return ["\n".join(lines[i : i + per_record]).encode() for i in range(0, len(lines), per_record)]


def _all_committed(settings: WriterSettings) -> bool:
    topic = settings.kafka.topics.telemetry
    committed = committed_offsets(settings.kafka, settings.influx_writer.group_id, topic)
    return all(committed[p] == end for p, end in end_offsets(settings.kafka, topic).items() if end > 0)


def test_every_line_is_written_then_offsets_committed(
    writer_settings: WriterSettings, start_writer: StartWriter
) -> None:
    produce_lines(writer_settings.kafka, writer_settings.kafka.topics.telemetry, _records(0, 3000, per_record=3))
    writer = start_writer(writer_settings)
    wait_until(lambda: count_points(writer_settings.influx) == 6000, 60, interval_s=0.5, what="6000 points")
    wait_until(lambda: _all_committed(writer_settings), 20, interval_s=0.5, what="offsets committed")
    writer.stop()
    assert not writer.errors
    health_ok, detail = writer.service.flusher.health.probe()
    assert health_ok and detail == "writing"


def test_poison_lines_go_to_the_dlq_with_influxdb_reason_and_good_points_pass(
    writer_settings: WriterSettings, start_writer: StartWriter
) -> None:
    topic = writer_settings.kafka.topics.telemetry
    records = _records(0, 1000)
    poison = {
        100: b"m,dev=d0 v= 1",  # missing field value (400, whole request refused)
        400: b'm,dev=d0 v="text",x=1 ' + str(BASE_NS + 1).encode(),  # field type conflict (422, partial write)
        401: b"no fields here",
        777: b"m,dev=d1 v=1i 99999999999999999999999",  # timestamp out of range
    }
    for index, value in sorted(poison.items(), reverse=True):
        records.insert(index, value)
    # One multi-line record whose middle line is bad: only that line goes to the DLQ.
    records.append(b"m,dev=d9 v=1i 1\nm,dev=d9 v=oops 2\nm,dev=d9 v=3i 3")
    produce_lines(writer_settings.kafka, topic, records, keys=1)  # one key: one partition, offsets in order
    writer = start_writer(writer_settings)
    wait_until(lambda: _all_committed(writer_settings), 60, interval_s=0.5, what="offsets committed")
    writer.stop()

    assert count_points(writer_settings.influx) == 2 * 1000 + 2  # 1000 good lines of 2 fields, 2 of 1
    dlq = confluent_kafka.Consumer(
        {
            "bootstrap.servers": writer_settings.kafka.bootstrap_servers,
            "group.id": "dlq-reader",
            "auto.offset.reset": "earliest",
        }
    )
    dlq.subscribe([writer_settings.kafka.topics.dlq])
    letters: list[confluent_kafka.Message] = []
    wait_until(lambda: letters.extend(dlq.consume(10, 0.5)) or len(letters) >= 5, 30, what="5 dead letters")
    dlq.close()
    by_value = {m.value(): dict((k, v.decode()) for k, v in m.headers() or []) for m in letters}
    assert set(by_value) == {*poison.values(), b"m,dev=d9 v=oops 2"}
    assert "missing field value" in by_value[poison[100]]["reason"]
    assert "field type conflict" in by_value[poison[400]]["reason"]
    assert by_value[poison[400]]["influx.status"] == "422"
    assert by_value[poison[100]]["influx.status"] == "400"
    for value, headers in by_value.items():
        assert headers["source.topic"] == topic
        source_offset = records.index(value) if value in records else len(records) - 1
        assert headers["source.offset"] == str(source_offset)
        assert headers["reason"]


def test_redelivered_records_create_no_duplicate_rows(
    writer_settings: WriterSettings, start_writer: StartWriter
) -> None:
    produce_lines(writer_settings.kafka, writer_settings.kafka.topics.telemetry, _records(0, 1500))
    first = start_writer(writer_settings)
    wait_until(lambda: _all_committed(writer_settings), 60, interval_s=0.5, what="first pass committed")
    first.stop()
    rows_before = count_points(writer_settings.influx)
    assert rows_before == 3000
    # A new group reads the whole topic again: every record is redelivered and written a second time.
    again = writer_settings.model_copy(
        update={
            "influx_writer": writer_settings.influx_writer.model_copy(
                update={"group_id": "replay-" + str(time.time_ns())}
            )
        }
    )
    second = start_writer(again)
    wait_until(lambda: _all_committed(again), 60, interval_s=0.5, what="replay committed")
    second.stop()
    assert count_points(writer_settings.influx) == rows_before
    values = flux_rows(
        writer_settings.influx,
        f'from(bucket: "{writer_settings.influx.bucket}") |> range(start: 0) |> filter(fn: (r) => r._field == "v")'
        " |> group() |> sum()",
    )
    assert int(values[0]["_value"]) == sum(range(1500))


def test_influxdb_down_mid_stream_pauses_commits_nothing_and_loses_nothing(
    writer_settings: WriterSettings,
    start_writer: StartWriter,
    private_influx: tuple[InfluxServer, InfluxSettings],
) -> None:
    server, influx = private_influx
    settings = writer_settings.model_copy(update={"influx": influx})
    topic, group = settings.kafka.topics.telemetry, settings.influx_writer.group_id
    produce_lines(settings.kafka, topic, _records(0, 2000))
    writer = start_writer(settings)
    wait_until(lambda: _all_committed(settings), 60, interval_s=0.5, what="first half committed")
    assert count_points(influx) == 4000

    server.kill()  # a crash: the harshest way to go down
    produce_lines(settings.kafka, topic, _records(2000, 6000))
    wait_until(lambda: writer.service.paused, 30, what="consumption paused while InfluxDB is down")
    committed_while_down = committed_offsets(settings.kafka, group, topic)
    wait_until(lambda: not writer.service.flusher.health.probe()[0], 10, what="health failing")
    time.sleep(2)  # several retry rounds (backoff capped at 0.5 s) with InfluxDB down
    assert committed_offsets(settings.kafka, group, topic) == committed_while_down
    assert sum(committed_while_down.values()) == 2000
    assert writer.service.flusher.in_flight() <= settings.influx_writer.max_in_flight
    # Memory bound: the open batch holds at most what the paused consumer had prefetched.
    assert len(writer.service.batcher.current) < 6000

    server.start()
    server.wait_ready(60)
    wait_until(lambda: _all_committed(settings), 90, interval_s=0.5, what="everything committed after restart")
    assert count_points(influx) == 16000
    assert not writer.service.paused
    assert writer.service.flusher.health.probe()[0]
    writer.stop()
    assert not writer.errors


def test_refused_token_stops_the_writer_without_commit(
    writer_settings: WriterSettings, start_writer: StartWriter
) -> None:
    produce_lines(writer_settings.kafka, writer_settings.kafka.topics.telemetry, _records(0, 100))
    bad = writer_settings.influx.model_copy(update={"token": SecretStr("not-a-valid-token-123")})
    writer = start_writer(writer_settings.model_copy(update={"influx": bad}))
    writer.thread.join(30)
    assert not writer.thread.is_alive()
    assert len(writer.errors) == 1 and isinstance(writer.errors[0], InfluxAuthError)
    assert "401" in str(writer.errors[0])
    committed = committed_offsets(
        writer_settings.kafka, writer_settings.influx_writer.group_id, writer_settings.kafka.topics.telemetry
    )
    assert all(offset < 0 for offset in committed.values())


@pytest.fixture
def data_path(tmp_path: Path) -> Path:
    return tmp_path


def test_health_settings_default_port() -> None:
    assert WriterSettings().influx_writer.http == HttpSettings(port=9103)
    assert isinstance(KafkaSettings(), KafkaSettings)


def test_partitions_moving_to_a_new_replica_mid_stream_lose_and_double_nothing(
    writer_settings: WriterSettings, start_writer: StartWriter, capfd: pytest.CaptureFixture[str]
) -> None:
    topic = writer_settings.kafka.topics.telemetry
    first = start_writer(writer_settings)
    produce_lines(writer_settings.kafka, topic, _records(0, 3000, per_record=2))
    wait_until(lambda: count_points(writer_settings.influx) > 0, 30, interval_s=0.1, what="first writes")
    # A second replica joins: the first one is revoked some partitions while it has batches in flight.
    second = start_writer(writer_settings)
    produce_lines(writer_settings.kafka, topic, _records(3000, 3000, per_record=2))
    wait_until(lambda: second.service.consumer is not None and second.service.consumer.assignment, 30, what="rebalance")
    produce_lines(writer_settings.kafka, topic, _records(6000, 3000, per_record=2))
    wait_until(lambda: _all_committed(writer_settings), 60, interval_s=0.5, what="everything committed")
    assert count_points(writer_settings.influx) == 2 * 9000
    first_parts = first.service.consumer.assignment if first.service.consumer else set()
    second_parts = second.service.consumer.assignment if second.service.consumer else set()
    assert first_parts and second_parts and not first_parts & second_parts
    assert "partitions_revoked" in capfd.readouterr().out  # the first replica handed partitions over
    first.stop()
    second.stop()
    assert not first.errors and not second.errors


def test_slow_influxdb_gets_smaller_requests_and_longer_timeouts_then_both_come_back(
    writer_settings: WriterSettings, start_writer: StartWriter, slow_proxy: SlowProxy
) -> None:
    """Issue 13, finding 2: a fixed timeout below InfluxDB's answer time wrote nothing at all, for good."""
    influx = writer_settings.influx
    slowed = influx.model_copy(update={"url": f"http://127.0.0.1:{slow_proxy.port}", "timeout_ms": 1_000})
    options = writer_settings.influx_writer.model_copy(
        update={"batch_lines": 2_000, "min_write_lines": 250, "max_write_timeout_ms": 8_000, "retry_max_ms": 200}
    )
    settings = writer_settings.model_copy(update={"influx": slowed, "influx_writer": options})
    topic = settings.kafka.topics.telemetry
    slow_proxy.delay_s = 2.5  # every request answered after 2.5 s or more: longer than the 1 s timeout
    produce_lines(settings.kafka, topic, _records(0, 6000, per_record=2))
    writer = start_writer(settings)
    sizer = writer.service.flusher.sizer
    assert sizer is not None
    registry = writer.service.metrics.registry  # the writer's own: what its /metrics serves
    assert sizer.metrics is writer.service.metrics
    wait_until(lambda: count_points(influx) == 12000, 120, interval_s=1, what="every point written while slow")
    assert (registry.get_sample_value("telestack_influx_writer_write_timeouts_total") or 0) > 0
    assert sizer.timeout_s > 2.5 and sizer.lines < 2_000  # adapted: longer timeout, smaller requests
    gauge = registry.get_sample_value("telestack_influx_writer_write_timeout_seconds")
    assert gauge == sizer.timeout_s  # reported on /metrics

    slow_proxy.delay_s = 0  # InfluxDB healthy again
    produce_lines(settings.kafka, topic, _records(6000, 20000, per_record=2))
    wait_until(lambda: _all_committed(settings), 120, interval_s=1, what="everything committed once fast again")
    assert count_points(influx) == 52000
    wait_until(lambda: sizer.lines == 2_000 and sizer.timeout_s == 1.0, 30, what="back to the configured size")
    assert registry.get_sample_value("telestack_influx_writer_write_lines_target") == 2_000
    writer.stop()
    assert not writer.errors

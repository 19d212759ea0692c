"""Fixtures of the influx-writer tests: writer settings on a fresh topic and bucket, an in-process writer,
queries of what InfluxDB holds, committed offsets, and a private InfluxDB for outage tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import confluent_kafka
import pytest
import structlog

from telestack.core.influx_http import InfluxHttp
from telestack.core.kafka import KafkaProducer, ensure_topics
from telestack.core.settings import HttpSettings, InfluxSettings, KafkaSettings, TopicSettings
from telestack.influx_writer.command import build_writer
from telestack.influx_writer.service import WriterService
from telestack.influx_writer.settings import WriterOptions, WriterSettings
from telestack.native import InfluxEndpoint
from telestack.native.servers import InfluxServer
from tests.harness import RunningService

LOG = structlog.get_logger("test-influx-writer")


@pytest.fixture
def writer_settings(
    kafka_settings: KafkaSettings, influx_settings: InfluxSettings, topic: str, unique: str
) -> WriterSettings:
    dlq = f"{topic}.dlq"
    ensure_topics(kafka_settings, {dlq: 1})
    kafka = kafka_settings.model_copy(update={"topics": TopicSettings(telemetry=topic, dlq=dlq)})
    options = WriterOptions(
        group_id=f"writer-{unique}",
        batch_lines=500,
        batch_delay_ms=50,
        retry_initial_ms=50,
        retry_max_ms=500,
        revoke_wait_ms=2_000,
        http=HttpSettings(port=0),
    )
    return WriterSettings(kafka=kafka, influx=influx_settings, influx_writer=options)


@pytest.fixture
def start_writer() -> Iterator[Callable[[WriterSettings], RunningService[WriterService]]]:
    """Factory: a writer built from settings, running in a thread; stopped after the test."""
    running: list[RunningService[WriterService]] = []

    def start(settings: WriterSettings) -> RunningService[WriterService]:
        running.append(RunningService(build_writer(settings, LOG)))
        return running[-1]

    yield start
    for handle in running:
        handle.shutdown.set()
    for handle in running:
        handle.stop(30)


def produce_lines(settings: KafkaSettings, topic: str, records: list[bytes], keys: int = 7) -> None:
    producer = KafkaProducer(settings)
    for i, value in enumerate(records):
        producer.produce(topic, value, key=f"dev-{i % keys}")
    assert producer.close(30) == 0


def flux_rows(influx: InfluxSettings, flux: str) -> list[dict[str, str]]:
    """Rows of a Flux query as dicts of column → text (annotations skipped)."""
    client = InfluxHttp(influx, gzip_level=0)
    rows: list[dict[str, str]] = []
    try:
        with client.query_csv(flux) as reader:
            header: list[str] | None = None
            for row in reader:
                if not row or not any(row):
                    header = None
                elif row[0].startswith("#"):
                    continue
                elif header is None:
                    header = row
                else:
                    rows.append(dict(zip(header, row, strict=False)))
    finally:
        client.close()
    return rows


def count_points(influx: InfluxSettings, measurement: str | None = None) -> int:
    where = f'|> filter(fn: (r) => r._measurement == "{measurement}")' if measurement else ""
    rows = flux_rows(influx, f'from(bucket: "{influx.bucket}") |> range(start: 0) {where} |> group() |> count()')
    return int(rows[0]["_value"]) if rows else 0


# What a group coordinator answers for a while when it moves or loads (seen under load: NOT_COORDINATOR).
_COORDINATOR_SETTLING = {
    confluent_kafka.KafkaError.NOT_COORDINATOR,
    confluent_kafka.KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    confluent_kafka.KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def committed_offsets(
    kafka: KafkaSettings, group: str, topic: str, partitions: int = 3, settle_s: float = 30
) -> dict[int, int]:
    """The group's committed offset per partition (-1001 when none); asked again while the coordinator settles."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": group})
    deadline = time.monotonic() + settle_s
    try:
        while True:
            try:
                committed = consumer.committed(
                    [confluent_kafka.TopicPartition(topic, p) for p in range(partitions)], 10
                )
                break
            except confluent_kafka.KafkaException as exc:
                if exc.args[0].code() not in _COORDINATOR_SETTLING or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in committed}


def end_offsets(kafka: KafkaSettings, topic: str, partitions: int = 3) -> dict[int, int]:
    consumer = confluent_kafka.Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "offsets-probe"})
    try:
        return {
            p: consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


@pytest.fixture
def private_influx(tmp_path: Path, influx: InfluxEndpoint) -> Iterator[tuple[InfluxServer, InfluxSettings]]:
    """An InfluxDB of this test alone, which it may stop and start (same port, same data)."""
    server = InfluxServer(tmp_path / "influxdb")
    server.install()
    server.start()
    try:
        server.wait_ready(60)
        token = "private-token-" + str(time.time_ns())
        server.setup(username="admin", password="private-pass-123", org="telestack", bucket="telemetry", token=token)
        yield server, InfluxSettings(url=server.url, org="telestack", bucket="telemetry", token=token)  # type: ignore[arg-type]
    finally:
        with contextlib.suppress(Exception):
            server.kill()  # throw-away data: no need to wait for a clean shutdown


class SlowProxy:
    """A TCP proxy to a real InfluxDB that holds each request `delay_s` before passing it on (a slow disk).

    A request starts with the first bytes a client sends on a connection, or the first it sends after an answer came
    back on that connection (HTTP/1.1 keep-alive: one request at a time); the answer comes back untouched. Telling
    requests apart by a quiet spell instead let a keep-alive request sent right after the previous answer through
    undelayed, and the writer saw a fast InfluxDB where the test meant a slow one.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.delay_s = 0.0
        self.requests = 0
        self.in_flight = 0  # requests started and not answered yet, over every connection
        self.max_in_flight = 0
        self._count_lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, name="slow-proxy", daemon=True).start()

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            answered = threading.Event()
            answered.set()  # the connection's first bytes start a request
            threading.Thread(target=self._pump, args=(client, upstream, answered, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, answered, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, answered: threading.Event, request: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not request:
                    if not answered.is_set():
                        with self._count_lock:
                            self.in_flight -= 1
                    answered.set()
                elif answered.is_set():  # the start of a request
                    answered.clear()
                    with self._count_lock:
                        self.requests += 1
                        self.in_flight += 1
                        self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    if self.delay_s:
                        time.sleep(self.delay_s)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._stop.set()
        self._server.close()


@pytest.fixture
def slow_proxy(influx: InfluxEndpoint) -> Iterator[SlowProxy]:
    proxy = SlowProxy(int(influx.url.rsplit(":", 1)[1]))
    yield proxy
    proxy.close()

"""Hostile MQTT payloads through the real pipeline: Mosquitto → mqtt-bridge → Kafka → influx-writer → InfluxDB.

Each corpus payload is published between two good, sequence-numbered messages. Afterwards: every good
message is in InfluxDB; every hostile one is in InfluxDB (mapped) or in ``telemetry.dlq`` with a reason
header (the bridge's reason, or InfluxDB's when the writer could not write it); and both services are still
running.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
import structlog
from benchmarks.e2e.influx import InfluxQuery

from telestack.core.backoff import Backoff
from telestack.core.influx_http import InfluxHttp
from telestack.core.kafka import KafkaProducer, Record, ensure_topics
from telestack.core.lineproto import Point, UInt, parse_lines
from telestack.core.mqtt import connect, make_client
from telestack.core.settings import HttpSettings, InfluxSettings, KafkaSettings, MqttSettings, TopicSettings
from telestack.influx_writer.dead_letters import DeadLetterQueue
from telestack.influx_writer.flusher import Flusher
from telestack.influx_writer.service import WriterService
from telestack.influx_writer.settings import WriterOptions, WriterSettings
from telestack.mqtt_bridge.command import BridgeService
from telestack.mqtt_bridge.mapping import map_message
from telestack.mqtt_bridge.rules import RuleSet, load_rules
from telestack.mqtt_bridge.settings import BridgeOptions, BridgeSettings
from telestack.native import InfluxEndpoint
from tests.harness import RunningService
from tests.hostile import corpus
from tests.kafka_reader import TopicReader
from tests.polling import wait_until

LOG = structlog.get_logger("hostile-e2e")
CASES = corpus.load("mqtt_payloads.yaml")


@pytest.fixture
def pipeline(
    kafka_settings: KafkaSettings, mqtt_settings: MqttSettings, influx_settings: InfluxSettings, unique: str
) -> Iterator[dict[str, Any]]:
    prefix = f"test/{unique}"
    topics = TopicSettings(telemetry=f"telemetry-{unique}", dlq=f"telemetry.dlq-{unique}")
    kafka = kafka_settings.model_copy(update={"topics": topics})
    ensure_topics(kafka, {topics.telemetry: 3, topics.dlq: 1})
    base = load_rules(corpus.DATA / "mqtt_rules.yaml")
    rules = RuleSet([c.rule.model_copy(update={"topic": f"{prefix}/{c.rule.topic}"}) for c in base.rules])
    bridge_settings = BridgeSettings(
        kafka=kafka,
        mqtt=mqtt_settings,
        mqtt_bridge=BridgeOptions(
            client_id=f"hostile-{unique}", subscriptions=[f"{prefix}/#"], ack_topic=None, drain_timeout_s=5
        ),
    )
    bridge_thread = RunningService(BridgeService(bridge_settings, rules))
    bridge = bridge_thread.service.bridge

    writer_settings = WriterSettings(
        kafka=kafka,
        influx=influx_settings,
        influx_writer=WriterOptions(group_id=f"hostile-{unique}", batch_delay_ms=50, http=HttpSettings(port=0)),
    )
    sink = InfluxHttp(influx_settings)
    writer_producer = KafkaProducer(kafka)
    flusher = Flusher(
        sink, DeadLetterQueue(writer_producer, topics.dlq), Backoff(0.05, 0.5), max_in_flight=2, log=LOG
    ).start()
    writer = WriterService(writer_settings, flusher, log=LOG, closing=[writer_producer.close, sink.close])
    writer_thread = RunningService(writer)

    wait_until(lambda: bridge.subscribed or bridge_thread.errors, timeout_s=20, what="bridge subscribed")
    publisher = make_client(mqtt_settings, client_id=f"hostile-pub-{unique}")
    connect(publisher, mqtt_settings)
    yield {
        "prefix": prefix,
        "rules": rules,
        "kafka": kafka,
        "bridge": bridge_thread,
        "writer": writer_thread,
        "publisher": publisher,
        "influx": influx_settings,
    }
    publisher.disconnect()
    publisher.loop_stop()
    bridge_thread.stop(30)
    writer_thread.stop(30)


def _publish(client: paho.Client, topic: str, payload: bytes) -> None:
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(10)


def _dead_letters(kafka: KafkaSettings, expected: int) -> list[Record]:
    """The dead letters once `expected` are there (after 20 s, what there is: the caller says what is missing),
    and any more that come within a second."""
    with TopicReader(kafka, [kafka.topics.dlq]) as reader:
        letters = reader.records[kafka.topics.dlq]
        deadline = time.monotonic() + 20
        while len(letters) < expected and time.monotonic() < deadline:
            reader.poll(0.3)
        reader.poll(1.0)  # and nothing more than expected
        return letters


def _stored(query: InfluxQuery) -> list[dict[str, str]]:
    return query.rows(
        f'from(bucket: "{query.bucket}") |> range(start: -3d, stop: 3d) |> drop(columns: ["_start", "_stop"])'
    )


def _same(value: Any, text: str) -> bool:
    if isinstance(value, bool):
        return text == ("true" if value else "false")
    if isinstance(value, int | float):
        return math.isclose(float(value), float(text), rel_tol=1e-9, abs_tol=1e-12)
    return str(value) == text


def _found(point: Point, rows: list[dict[str, str]], with_time: bool) -> bool:
    """Every field of `point` is stored, with its tags (and its time when the payload gave one)."""
    for name, value in point.fields.items():
        hit = any(
            row["_measurement"] == point.measurement
            and row["_field"] == name
            and all(row.get(tag) == tag_value for tag, tag_value in point.tags.items())
            and _same(value, row["_value"])
            and (not with_time or _time_ns(row["_time"]) == point.time_ns)
            for row in rows
        )
        if not hit:
            return False
    return True


def _time_ns(text: str) -> int:
    from datetime import datetime

    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(whole + "+00:00").timestamp())
    return seconds * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def test_hostile_payloads_between_good_ones_through_the_whole_pipeline(
    pipeline: dict[str, Any], influx: InfluxEndpoint
) -> None:
    prefix, rules, client = pipeline["prefix"], pipeline["rules"], pipeline["publisher"]
    # Canary n at first_ms + n, case n at its own millisecond too: points of one series at one time would
    # overwrite each other (InfluxDB's dedup), which this test is not about.
    first_ms = int(time.time() * 1000)
    expected_dlq: list[tuple[str, bytes, str]] = []
    expected_points: list[tuple[str, Point, bool]] = []
    for seq, case in enumerate(CASES):
        canary = json.dumps({"seq": seq, "ts": first_ms + seq, "v": 0.5}).encode()
        _publish(client, f"{prefix}/hostile/json/canary", canary)
        topic = f"{prefix}/{case['topic']}"
        payload = corpus.build(case, "payload", corpus.time_tokens((first_ms + seq) / 1000, 1_000))
        _publish(client, topic, payload)
        if case["expect"] == "written":
            mapped = map_message(rules, topic, payload, 0)
            for point in parse_lines(mapped.value):
                expected_points.append((case["name"], point, point.time_ns != 0))
        else:
            expected_dlq.append((topic, payload, case["expect"]))
    _publish(client, f"{prefix}/hostile/json/canary", json.dumps({"seq": len(CASES), "ts": 1}).encode())

    query = InfluxQuery(influx, pipeline["influx"].bucket)
    try:

        def canaries() -> set[int]:
            rows = query.rows(
                f'from(bucket: "{query.bucket}") |> range(start: 0, stop: 3d) '
                '|> filter(fn: (r) => r.device == "canary" and r._field == "seq")'
            )
            return {int(float(r["_value"])) for r in rows}

        wait_until(
            lambda: canaries() >= set(range(len(CASES) + 1)) or pipeline["bridge"].errors,
            timeout_s=60,
            what="every good message in InfluxDB",
        )
        assert not pipeline["bridge"].errors, f"the bridge crashed: {pipeline['bridge'].errors!r}"
        assert not pipeline["writer"].errors, f"the writer crashed: {pipeline['writer'].errors!r}"
        assert canaries() >= set(range(len(CASES) + 1))
        rows = _stored(query)
    finally:
        query.close()

    letters = _dead_letters(pipeline["kafka"], len(expected_dlq))
    by_bridge = {(r.header("mqtt_topic"), r.value): r for r in letters if r.header("mqtt_topic")}
    by_writer = [r for r in letters if r.header("source.service") == "influx-writer"]
    for topic, payload, reason in expected_dlq:
        letter = by_bridge.get((topic, payload))
        assert letter is not None, f"no dead letter for {topic} {payload[:60]!r}"
        assert letter.header("reason") == reason, (topic, letter.header("reason"), letter.header("detail"))
        assert letter.header("detail")
    assert all(r.header("reason") for r in by_writer)
    for letter in by_writer:  # a dead letter holds whole lines, so it can be fixed and replayed
        try:
            parse_lines(letter.value.decode())
        except ValueError as exc:
            pytest.fail(f"the writer dead-lettered part of a line ({exc}): {letter.value[:120]!r}")
    refused_lines = [line for r in by_writer for line in r.value.decode().splitlines()]
    for name, point, with_time in expected_points:
        written = _found(point, rows, with_time)
        seq = point.fields.get("seq")
        key = f"seq={int(seq)}{'u' if isinstance(seq, UInt) else 'i'}" if seq is not None else next(iter(point.fields))
        dead = any(line.startswith(point.measurement) and key in line for line in refused_lines)
        assert written or dead, f"{name}: neither in InfluxDB nor dead-lettered: {point}; writer's: {refused_lines}"
    assert len(letters) == len(expected_dlq) + len(by_writer)  # nothing else went to the DLQ


def test_a_poison_message_does_not_stop_the_bridge(pipeline: dict[str, Any]) -> None:
    """The payloads that once escaped the mapping (see test_mqtt_mapping): the bridge survives each."""
    prefix, client = pipeline["prefix"], pipeline["publisher"]
    poison = [
        b'{"seq": 1, "ts": 1700000000000, "v": ' + b"9" * 400 + b"}",  # beyond float64
        b'{"seq": 2, "ts": 1700000000000, "s": "\\ud800"}',  # a lone surrogate: not UTF-8 once decoded
    ]
    for payload in poison:
        _publish(client, f"{prefix}/hostile/json/poison", payload)
    _publish(client, f"{prefix}/hostile/json/after", b'{"seq": 3, "ts": 1700000000000}')
    letters: list[Record] = []
    deadline = time.monotonic() + 20
    while len(letters) < len(poison) and time.monotonic() < deadline and not pipeline["bridge"].errors:
        letters = [r for r in _dead_letters(pipeline["kafka"], len(poison)) if r.header("mqtt_topic")]
    assert not pipeline["bridge"].errors, f"the bridge crashed on a poison message: {pipeline['bridge'].errors!r}"
    assert sorted(r.value for r in letters) == sorted(poison)
    assert all(r.header("reason") == "invalid" for r in letters)

"""Consumer lag: the pure sum, the probe on real Kafka, and `telestack kafka-lag` serving it on /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from confluent_kafka import KafkaError as ConfluentKafkaError
from confluent_kafka.admin import ListConsumerGroupsResult

from telestack.core.errors import KafkaError
from telestack.core.kafka import KafkaConsumer, KafkaProducer
from telestack.core.settings import KafkaSettings
from telestack.kafka_admin.lag import LagProbe, lag_by_topic
from telestack.native.endpoints import KafkaEndpoint
from telestack.native.servers import free_port
from tests.polling import wait_until


def test_lag_sums_partitions_and_counts_uncommitted_ones_whole() -> None:
    committed = {("a", 0): 10, ("a", 1): -1001, ("b", 0): 7}
    ends = {("a", 0): 15, ("a", 1): 3, ("b", 0): 7}
    assert lag_by_topic(committed, ends) == {"a": 8, "b": 0}


def _consume(settings: KafkaSettings, group: str, topic: str, count: int) -> None:
    consumer = KafkaConsumer(settings, group, [topic])
    try:
        done = 0
        while done < count:
            records = consumer.consume(max_records=count - done, timeout_s=1)
            consumer.mark_done(records)
            done += len(records)
        consumer.commit()
    finally:
        consumer.close()


def _produce(settings: KafkaSettings, topic: str, count: int) -> None:
    producer = KafkaProducer(settings)
    for i in range(count):
        producer.produce(topic, f"m value={i}", key=f"k{i % 3}")
    producer.flush()
    producer.close()


def test_probe_reads_a_groups_lag(kafka_settings: KafkaSettings, topic: str, unique: str) -> None:
    _produce(kafka_settings, topic, 30)
    group = f"lag-{unique}"
    _consume(kafka_settings, group, topic, 12)
    probe = LagProbe(kafka_settings)
    assert group in probe.groups()
    assert probe.lag([group]) == {group: {topic: 18}}


def test_kafka_lag_command_serves_the_gauge(
    kafka: KafkaEndpoint, kafka_settings: KafkaSettings, topic: str, unique: str
) -> None:
    _produce(kafka_settings, topic, 10)
    group = f"lag-{unique}"
    _consume(kafka_settings, group, topic, 4)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TELESTACK_")},
        "TELESTACK_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "TELESTACK_KAFKA_LAG__HTTP__PORT": str(port),
        "TELESTACK_KAFKA_LAG__INTERVAL_S": "1",
        "TELESTACK_KAFKA_LAG__GROUPS": f'["{group}"]',
    }
    proc = subprocess.Popen([sys.executable, "-m", "telestack", "kafka-lag"], env=env, stderr=subprocess.PIPE)
    try:
        line = f'telestack_kafka_consumer_lag_records{{group="{group}",topic="{topic}"}} 6.0'

        def served() -> bool:
            try:
                return line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                return False

        wait_until(served, timeout_s=30, what="the lag gauge on /metrics")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


class _NeverDone:
    """A future of a request Kafka never answers (a frozen broker): ``result(timeout)`` raises TimeoutError."""

    def result(self, timeout: float | None = None) -> Any:
        raise TimeoutError


class _FrozenAdmin:
    def list_consumer_groups(self, **kwargs: Any) -> _NeverDone:
        return _NeverDone()

    def list_consumer_group_offsets(self, requests: list[Any], **kwargs: Any) -> dict[str, _NeverDone]:
        return {request.group_id: _NeverDone() for request in requests}

    def list_offsets(self, request: dict[Any, Any], **kwargs: Any) -> dict[Any, _NeverDone]:
        return {tp: _NeverDone() for tp in request}


class _Done:
    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self, timeout: float | None = None) -> Any:
        return self.value


class _UnreachableAdmin:
    """What librdkafka answered in 2 of 30 tries with Kafka away: a listing with no group and only errors."""

    def list_consumer_groups(self, **kwargs: Any) -> _Done:
        return _Done(ListConsumerGroupsResult(valid=[], errors=[ConfluentKafkaError(-185, "Local: Timed out")]))


def test_a_group_listing_with_errors_is_a_failed_probe_not_zero_groups() -> None:
    """kafka-lag said healthy ("0 groups", /healthz 200) while Kafka was away whenever librdkafka answered so."""
    probe = LagProbe(KafkaSettings(bootstrap_servers="127.0.0.1:1"), timeout_s=0.1)
    probe.admin = _UnreachableAdmin()  # type: ignore[assignment]
    with pytest.raises(KafkaError, match="Timed out"):
        probe.groups()
    with pytest.raises(KafkaError):
        probe.lag()


def test_a_probe_that_times_out_raises_kafka_error() -> None:
    """Issue 13, finding 5: the future's TimeoutError escaped and ended `telestack kafka-lag`."""
    probe = LagProbe(KafkaSettings(bootstrap_servers="127.0.0.1:1"), timeout_s=0.1)
    probe.admin = _FrozenAdmin()  # type: ignore[assignment]
    with pytest.raises(KafkaError):
        probe.groups()
    with pytest.raises(KafkaError):
        probe.committed("g")
    with pytest.raises(KafkaError):
        probe.ends([("t", 0)])


@pytest.mark.integration  # starts the kafka-lag service in a process of its own
def test_kafka_lag_command_keeps_probing_while_kafka_is_away() -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TELESTACK_")},
        # port 1: nothing listens there, ever; a free port could be taken by another test's broker meanwhile
        "TELESTACK_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "TELESTACK_KAFKA_LAG__HTTP__PORT": str(port),
        "TELESTACK_KAFKA_LAG__INTERVAL_S": "0.2",
        "TELESTACK_KAFKA_LAG__TIMEOUT_S": "0.5",
    }
    proc = subprocess.Popen([sys.executable, "-m", "telestack", "kafka-lag"], env=env, stderr=subprocess.DEVNULL)
    failures = 0

    def failed_probes() -> int:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return 0
        return (
            int(float(text.split("\ntelestack_kafka_lag_probe_up ")[1].split()[0]) == 0) if "probe_up " in text else 0
        )

    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and failures < 8:  # several failed probes, each of them survived
            assert proc.poll() is None, f"kafka-lag exited with {proc.returncode} while Kafka was away"
            failures += failed_probes()
            time.sleep(0.5)
        assert failures >= 8
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 503
    finally:
        proc.terminate()
        assert proc.wait(15) == 0

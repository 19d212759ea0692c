"""Kafka frozen past the consumer's session timeout, again and again: the consumer always comes back.

Regression test of the writer that stalled for good after a Kafka freeze (issue 13, finding 1). The cause:
librdkafka's auto-commit timer sent an OffsetCommitRequest every second to the frozen coordinator whether or
not the last was answered; they piled up on the coordinator connection (the heartbeat timed out "possibly
held back by preceding OffsetCommitRequest"), and after the session timed out librdkafka would not rejoin
the group before every one of them had ended, each waiting out ``socket.timeout.ms`` and its retries. With
the broker decommissioned meanwhile (a single KRaft node fences itself when frozen), librdkafka 2.16 was
also seen to crash (SIGSEGV in its main thread) on those retried commits. `KafkaConsumer` now commits
itself, asynchronously, one commit in flight at most. A second cause showed in the full chaos test: the
thawed broker, fenced by its own KRaft controller for a moment, answers Metadata without itself; librdkafka
then forgets every broker and bootstraps again only after 5 minutes (``REBOOTSTRAP_AFTER_MS`` now).

Each cycle: a consumer (a child process, so that a crash is a failure and not the end of the test run)
consumes and marks done under a steady load; the broker is frozen (SIGSTOP) until the consumer has lost its
assignment, and a little longer; then thawed. Every record produced up to the thaw must be consumed and
committed within `RECOVERY_S`. ``TELESTACK_FREEZE_CYCLES`` sets the number of cycles (default 3; issue 13's
proof ran 20).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import pytest

from telestack.core.errors import KafkaError
from telestack.core.kafka import KafkaConsumer, KafkaProducer, ensure_topics
from telestack.core.settings import KafkaSettings
from telestack.kafka_admin.lag import LagProbe
from telestack.native.servers import KafkaServer
from tests.polling import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(1800)]

PARTITIONS = 3
RECOVERY_S = 60.0  # thaw → every record produced so far committed; a healthy run takes 10-20 s (rejoin)
LOST_WITHIN_S = 40.0  # session.timeout.ms is 10 s
FROZEN_AFTER_LOST_S = 3.0  # the broker's view of the session expires too


def _consumer_loop(bootstrap: str, group: str, topic: str, assigned: Synchronized, stop: Any) -> None:
    """The writer's use of `KafkaConsumer`, in a child process: consume, mark done, report the assignment."""
    consumer = KafkaConsumer(KafkaSettings(bootstrap_servers=bootstrap), group, [topic])
    try:
        while not stop.is_set():
            consumer.mark_done(consumer.consume(500, 0.5))
            assigned.value = len(consumer.assignment)
    finally:
        consumer.close()


@pytest.fixture
def frozen_kafka(tmp_path: Path) -> Iterator[KafkaServer]:
    """A Kafka broker of this test alone: it gets frozen."""
    server = KafkaServer(tmp_path / "kafka")
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGCONT)
        server.kill()


def _behind(settings: KafkaSettings, group: str, topic: str, ends: dict[tuple[str, int], int]) -> int | None:
    """Records up to `ends` not yet committed by `group`; None while Kafka does not answer."""
    try:
        committed = LagProbe(settings, timeout_s=5).committed(group)  # a fresh client: metadata after the thaw
    except KafkaError:
        return None
    return sum(max(0, end - max(0, committed.get(tp, 0))) for tp, end in ends.items())


def _ends(settings: KafkaSettings, topic: str) -> dict[tuple[str, int], int] | None:
    """End offsets of `topic`; None while the broker settles after the thaw (stale leader epochs)."""
    try:
        return LagProbe(settings, timeout_s=5).ends([(topic, p) for p in range(PARTITIONS)])
    except KafkaError:
        return None


def test_consumer_recovers_from_every_kafka_freeze(frozen_kafka: KafkaServer) -> None:
    cycles = int(os.environ.get("TELESTACK_FREEZE_CYCLES", "3"))
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{frozen_kafka.port}", linger_ms=5)
    topic, group = f"freeze-{uuid.uuid4().hex[:8]}", f"freeze-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, {topic: PARTITIONS})
    context = multiprocessing.get_context("spawn")
    assigned: Synchronized = context.Value("i", 0)  # type: ignore[assignment]
    stop_consumer = context.Event()
    child = context.Process(
        target=_consumer_loop, args=(settings.bootstrap_servers, group, topic, assigned, stop_consumer)
    )
    producer = KafkaProducer(settings)
    stop_load = threading.Event()
    hold_load = threading.Event()

    def load() -> None:
        n = 0
        while not stop_load.is_set():
            if not hold_load.is_set():
                producer.produce(topic, f"m seq={n}i", key=f"d{n % 7}")
                n += 1
            producer.poll(0.01)

    loader = threading.Thread(target=load, name="freeze-load", daemon=True)
    child.start()
    loader.start()
    pid = frozen_kafka.process.pid  # type: ignore[union-attr]
    recovered: list[float] = []
    try:
        wait_until(lambda: assigned.value == PARTITIONS, 60, what="the consumer assigned every partition")
        for cycle in range(cycles):
            time.sleep(2)  # load before the freeze
            os.killpg(pid, signal.SIGSTOP)
            try:
                wait_until(
                    lambda: assigned.value == 0 or not child.is_alive(),
                    LOST_WITHIN_S,
                    what=f"cycle {cycle}: the consumer lost its assignment while Kafka was frozen",
                )
                time.sleep(FROZEN_AFTER_LOST_S)
            finally:
                os.killpg(pid, signal.SIGCONT)
            thawed = time.monotonic()
            hold_load.set()  # count what was produced up to the thaw
            assert producer.flush(60) == 0, "records produced during the freeze were not confirmed after it"
            ends = wait_until(
                lambda: _ends(settings, topic), 30, interval_s=0.5, what="end offsets readable after the thaw"
            )
            hold_load.clear()
            wait_until(
                lambda ends=ends: child.is_alive() and _behind(settings, group, topic, ends) == 0,
                RECOVERY_S,
                interval_s=0.5,
                what=f"cycle {cycle}: every record produced up to the thaw committed (consumer alive: "
                f"{child.is_alive()}, exit code {child.exitcode})",
            )
            recovered.append(round(time.monotonic() - thawed, 1))
    finally:
        stop_load.set()
        loader.join(10)
        stop_consumer.set()
        child.join(30)
        if child.is_alive():
            child.kill()
        producer.close(5)
    print(f"recovered after each thaw (s): {recovered}")
    assert child.exitcode == 0, f"the consumer process ended with {child.exitcode}"

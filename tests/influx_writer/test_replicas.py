"""Writer replicas as real processes sharing the partitions: one killed with SIGKILL mid-stream loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from telestack.core.kafka import ensure_topics
from telestack.core.settings import InfluxSettings, KafkaSettings
from telestack.native import Endpoints
from tests.influx_writer.conftest import committed_offsets, count_points, end_offsets, produce_lines
from tests.polling import wait_until

BASE_NS = 1_700_000_000_000_000_000
TELESTACK = str(Path(sys.executable).with_name("telestack"))


def _start_replica(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [TELESTACK, "influx-writer"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def test_replica_killed_mid_stream_loses_nothing(
    endpoints: Endpoints,
    kafka_settings: KafkaSettings,
    influx_settings: InfluxSettings,
    topic: str,
    unique: str,
    tmp_path: Path,
) -> None:
    group = f"replicas-{unique}"
    ensure_topics(kafka_settings, {f"{topic}.dlq": 1})  # `topic` is made by its fixture; the writer checks both
    env = {
        **os.environ,
        **endpoints.env(),
        "TELESTACK_KAFKA__TOPICS__TELEMETRY": topic,
        "TELESTACK_KAFKA__TOPICS__DLQ": f"{topic}.dlq",
        "TELESTACK_INFLUX__BUCKET": influx_settings.bucket,
        "TELESTACK_INFLUX_WRITER__GROUP_ID": group,
        "TELESTACK_INFLUX_WRITER__BATCH_LINES": "2000",
        "TELESTACK_INFLUX_WRITER__BATCH_DELAY_MS": "100",
        "TELESTACK_INFLUX_WRITER__HTTP__PORT": "0",
        "TELESTACK_LOG__FORMAT": "json",
    }
    replicas = [_start_replica(env, tmp_path / f"writer-{i}.log") for i in range(2)]
    total_records, lines_per_record = 4000, 10

    def produce() -> None:
        for chunk in range(20):  # ~4 s of steady traffic
            records = [
                "\n".join(
                    f"vehicle,bus=can{j % 3} rpm={n}i,speed={n * 0.1} {BASE_NS + (n * lines_per_record + j) * 1000}"
                    for j in range(lines_per_record)
                ).encode()
                for n in range(chunk * 200, (chunk + 1) * 200)
            ]
            produce_lines(kafka_settings, topic, records, keys=11)
            time.sleep(0.2)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_until(lambda: count_points(influx_settings) > 8_000, 60, interval_s=0.2, what="writes under way")
        os.killpg(replicas[0].pid, signal.SIGKILL)  # mid-stream: batches in flight, offsets not all committed
        replicas[0].wait()
        producer.join()
        expected = total_records * lines_per_record * 2
        wait_until(lambda: count_points(influx_settings) == expected, 90, interval_s=0.5, what=f"{expected} points")
        committed = lambda: committed_offsets(kafka_settings, group, topic) == end_offsets(kafka_settings, topic)  # noqa: E731
        wait_until(committed, 60, interval_s=0.5, what="survivor committed everything")
        assert count_points(influx_settings) == expected  # nothing doubled by the replay either
    finally:
        producer.join()
        for proc in replicas:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
    assert replicas[1].wait(30) == 0, (tmp_path / "writer-1.log").read_text()[-3000:]
    survivor_log = (tmp_path / "writer-1.log").read_text()
    assert '"event": "consuming"' in survivor_log

"""`telestack tail`: the latest-values table (pure), and the command following a real Kafka topic."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from telestack.core.kafka import KafkaProducer
from telestack.core.lineproto import Point
from telestack.core.settings import KafkaSettings
from telestack.demo.tail import LatestValues, SeriesFilter
from telestack.native.endpoints import KafkaEndpoint

S = 1_000_000_000


def test_latest_value_per_field_wins_by_timestamp_not_arrival() -> None:
    latest = LatestValues()
    latest.add(Point("fermenter", {"device": "f1"}, {"temperature": 18.5}, 20 * S), 0)
    latest.add(Point("fermenter", {"device": "f1"}, {"temperature": 17.0}, 10 * S), 0)  # late, older
    latest.add(Point("fermenter", {"device": "f1"}, {"setpoint": 18.0}, 15 * S), 0)
    lines = latest.render(now_ns=25 * S, width=200)
    assert lines[1] == "fermenter device=f1    5s  setpoint=18.00 temperature=18.50"


def test_filters_and_bad_lines() -> None:
    latest = LatestValues(SeriesFilter(measurements=("plug", "Bms*"), tags=(("device", "p*"),), fields=("po*",)))
    latest.add_text(
        "plug,device=p1 power=12.5,relay=true 1\nplug,device=x9 power=1 1\nBmsStatus,device=p2 power=3i 1\n"
        "fermenter,device=p1 power=2 1\nnot line protocol\n",
        0,
    )
    assert latest.bad_lines == 1
    assert [key for key in latest.series] == [("plug", (("device", "p1"),)), ("BmsStatus", (("device", "p2"),))]
    assert "relay" not in latest.render(now_ns=S, width=200)[2]


def test_rows_are_cut_to_the_terminal() -> None:
    latest = LatestValues()
    for i in range(30):
        latest.add(Point("m", {"device": f"d{i:02d}"}, {"v": float(i), "text": "x" * 200}, i * S), 0)
    lines = latest.render(now_ns=40 * S, width=60, max_rows=5)
    assert len(lines) == 6
    assert all(len(line) <= 60 for line in lines)
    assert [line.split()[1] for line in lines[1:]] == [
        "device=d25",
        "device=d26",
        "device=d27",
        "device=d28",
        "device=d29",
    ]


def test_tail_follows_the_telemetry_topic(kafka: KafkaEndpoint, kafka_settings: KafkaSettings, topic: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TELESTACK_")},
        "TELESTACK_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "TELESTACK_KAFKA__TOPICS__TELEMETRY": topic,
    }
    before = KafkaProducer(kafka_settings)  # written before tail started: not shown
    before.produce(topic, "fermenter,device=f0 temperature=1", key="f0")
    assert before.close() == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "telestack", "tail", "--duration", "10", "-m", "fermenter"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # tail reads what is written once it follows the topic, and says so on stderr (ci47: a guessed 4 s to join a
    # consumer group was too short on a loaded machine, and the records came before it read).
    said: list[str] = []
    following = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr or ():
            said.append(line)
            if "following" in line:
                following.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    if not following.wait(60):
        proc.kill()
        raise AssertionError(f"tail did not say it follows {topic} within 60 s: {''.join(said)}")
    assert any(f"following {topic} (" in line for line in said), said
    producer = KafkaProducer(kafka_settings)
    for value in (17.5, 18.25):
        producer.produce(topic, f"fermenter,device=f7 temperature={value},cooling=true", key="f7")
        producer.produce(topic, "plug,device=p1 power=3", key="p1")
        producer.flush()
    producer.close()
    proc.wait(timeout=30)  # --duration ends it; its output is one small table, printed at the end
    reader.join(10)
    out = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 0, "".join(said)
    rows = [line for line in out.splitlines() if line.startswith("fermenter")]
    assert len(rows) == 1, out
    assert "device=f7" in rows[0] and "temperature=18.25" in rows[0] and "cooling=true" in rows[0]
    assert "plug" not in out and "device=f0" not in out

"""Faults on real servers: the bridge killed with kill -9 mid-stream, and its Mosquitto restarted under it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from telestack.core.settings import MqttSettings
from telestack.mqtt_bridge.command import BridgeService
from telestack.mqtt_bridge.rules import parse_rules
from telestack.native import Endpoints
from telestack.native.servers import MosquittoServer, free_port
from tests.harness import RunningService
from tests.mqtt_bridge.conftest import BridgeHarness
from tests.polling import wait_until

SEQ_RULES = """
rules:
  - name: seq
    topic: "{prefix}/seq/{{device}}"
    measurement: seqtest
    types: {{seq: int}}
"""


class BridgeProcess:
    """``telestack mqtt-bridge`` as a separate process, as deployed."""

    def __init__(self, endpoints: Endpoints, harness: BridgeHarness, rules_file: Path, log: Path) -> None:
        self.port = free_port()
        self.args = [
            str(Path(sys.executable).parent / "telestack"),
            "mqtt-bridge",
            f"--mqtt-bridge.rules-file={rules_file}",
            f"--mqtt-bridge.client-id=kill9-{harness.unique}",
            f"--mqtt-bridge.http.port={self.port}",
            "--mqtt-bridge.inflight-window=500",
            f"--kafka.topics.telemetry={harness.topics.telemetry}",
            f"--kafka.topics.dlq={harness.topics.dlq}",
            f"--kafka.topics.commands={harness.topics.commands}",
            "--kafka.linger-ms=5",
            "--log.format=json",
        ]
        self.env = {**os.environ, **endpoints.env()}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=log)

    def health(self) -> dict[str, object]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                return dict(json.loads(response.read()))
        except OSError:
            return {}

    def wait_subscribed(self) -> None:
        def subscribed() -> bool:
            checks = self.health().get("checks")
            return isinstance(checks, dict) and "subscribed" in str(checks.get("mqtt", {}))

        wait_until(subscribed, timeout_s=60, what=f"bridge process subscribed (log: {self.log})")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)


def _seqs(values: list[bytes]) -> list[int]:
    return [int(m) for value in values for m in re.findall(rb"seq=(\d+)i", value)]


def test_kill_9_mid_stream_loses_no_qos1_message(harness: BridgeHarness, endpoints: Endpoints, tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(SEQ_RULES.format(prefix=harness.prefix))
    bridge = BridgeProcess(endpoints, harness, rules_file, tmp_path / "bridge.log")
    bridge.start()
    try:
        bridge.wait_subscribed()
        collector = harness.collector()
        publisher = harness.publisher()
        total, kill_at = 3000, 1000
        killed = threading.Event()

        def publish() -> None:
            for seq in range(total):
                info = publisher.publish(f"{harness.prefix}/seq/dev{seq % 5}", json.dumps({"seq": seq}), qos=1)
                if seq % 100 == 99:
                    info.wait_for_publish(10)  # ~ a steady stream, not one burst
                    time.sleep(0.02)
                if seq == kill_at:
                    killed.set()
            info.wait_for_publish(10)

        thread = threading.Thread(target=publish)
        thread.start()
        assert killed.wait(30)
        # Mid-stream: records in flight to Kafka and messages not yet acknowledged die with the process.
        bridge.kill()
        time.sleep(0.5)
        bridge.start()
        thread.join(60)
        collector.until(
            lambda: set(_seqs([r.value for r in collector.records[harness.topics.telemetry]])) >= set(range(total)),
            timeout_s=90,
            what="every sequence number in Kafka",
        )
        seqs = _seqs([r.value for r in collector.records[harness.topics.telemetry]])
        assert set(seqs) == set(range(total))
        # Redelivered messages may appear twice (at-least-once); the writer's overwrite makes that harmless.
        assert len(seqs) - total <= 500 + 200  # at most the in-flight window and what paho had in hand
        assert not collector.records[harness.topics.dlq]
    finally:
        bridge.stop()


def _terminate(server: MosquittoServer) -> None:
    """SIGTERM and reap (Mosquitto saves its sessions and queues on the way out)."""
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(20)


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[tuple[MosquittoServer, MqttSettings]]:
    """A Mosquitto of this test only: it gets restarted, which the shared one must never be."""
    server = MosquittoServer(tmp_path / "mosquitto")
    password = uuid.uuid4().hex
    server.add_user("bridge", password)
    server.install()
    server.start()
    server.wait_ready(30)
    settings = MqttSettings(host="127.0.0.1", port=server.port, username="bridge", password=password)
    yield server, settings
    if server.process is not None and server.process.poll() is None:
        _terminate(server)


def _disconnects(running: RunningService[BridgeService]) -> float:
    return running.service.metrics.registry.get_sample_value("telestack_mqtt_bridge_disconnects_total") or 0.0


def test_bridge_resumes_by_itself_after_mosquitto_restarts(
    harness: BridgeHarness, own_mosquitto: tuple[MosquittoServer, MqttSettings]
) -> None:
    server, mqtt = own_mosquitto
    rules = parse_rules(SEQ_RULES.format(prefix=harness.prefix))
    running = harness.start(rules, harness.settings(mqtt=mqtt, reconnect_bound_s=1.0))
    collector = harness.collector()

    def publish(seqs: range) -> None:
        publisher = harness.publisher(mqtt)
        for seq in seqs:
            info = publisher.publish(f"{harness.prefix}/seq/dev", json.dumps({"seq": seq}), qos=1)
        info.wait_for_publish(10)
        publisher.disconnect()

    def in_kafka(n: int) -> bool:
        return len(set(_seqs([r.value for r in collector.records[harness.topics.telemetry]]))) >= n

    publish(range(0, 100))
    collector.until(lambda: in_kafka(100), what="first batch")
    assert _disconnects(running) == 0

    with capture_logs() as logs:
        _terminate(server)
        wait_until(lambda: not running.service.bridge.connected, what="bridge noticed the broker is gone")
    assert _disconnects(running) == 1
    assert [e for e in logs if e["event"].startswith("mqtt disconnected") and e["log_level"] == "warning"]
    wait_until(lambda: not running.service.bridge.mqtt_health()[0], timeout_s=10, what="health failing past the bound")
    assert "disconnected for" in running.service.bridge.mqtt_health()[1]

    server.start()
    server.wait_ready(30)
    publish(range(100, 200))  # likely before the bridge is back: queued in its restored session
    wait_until(lambda: running.service.bridge.connected, timeout_s=40, what="bridge reconnected by itself")
    assert running.service.bridge.mqtt_health()[0]
    publish(range(200, 300))
    collector.until(lambda: in_kafka(300), timeout_s=30, what="every batch after the restart")
    assert set(_seqs([r.value for r in collector.records[harness.topics.telemetry]])) == set(range(300))

"""MQTT bridge throughput: QoS 1 messages/s through one ``telestack mqtt-bridge`` process, acked after Kafka.

Run with ``make bench-mqtt``; the last line of output is a JSON object of the figures. It uses the servers
named by ``TELESTACK_TEST_ENDPOINTS`` when set, else starts its own Kafka and Mosquitto in a temp dir.

Two phases, both against real Mosquitto and Kafka, with the bridge as a separate process (the CLI):

- backlog: the bridge's persistent session is created, the bridge stops, ``--messages`` QoS 1 messages are
  published while it is away (Mosquitto queues them), then the bridge starts again and drains them. This is
  the bridge's own capacity, since the publishers are out of the way: ``msgs_per_s``.
- live: the bridge runs while ``--publishers`` mosquitto_pub processes publish ``--messages`` more as fast
  as they can; ``live_msgs_per_s`` is the rate at which the bridge acknowledged them (publishers included).

Each message is a myStrom-style JSON report mapped by a json rule (flattening, typed fields) to one line.
CPU is the bridge process's user+system time over the measured span (100% = one core); on a machine
shared with other work the bridge may not get a whole core, so ``cpu_us_per_msg`` (CPU time per message)
is printed too: ``msgs_per_cpu_s`` is the rate one fully available core would sustain.
At the end the telemetry topic's record count is checked against what was published.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from telestack.core.kafka import admin_client, ensure_topics
from telestack.core.settings import KafkaSettings
from telestack.native import Endpoints
from telestack.native.servers import KafkaServer, MosquittoServer, free_port

__all__ = ["main"]

RULES = """
rules:
  - name: bench-plug
    topic: bench/{device}/report
    format: json
    measurement: plug
    types: {seq: int, power: float, Ws: float, relay: bool, temperature: float}
"""


@dataclass(frozen=True)
class Servers:
    bootstrap: str
    mqtt_host: str
    mqtt_port: int
    mqtt_user: str
    mqtt_password: str
    origin: str


@contextlib.contextmanager
def servers(workdir: Path) -> Iterator[Servers]:
    shared = os.environ.get("TELESTACK_TEST_ENDPOINTS")
    if shared:
        ep = Endpoints.load(Path(shared))
        yield Servers(
            ep.kafka.bootstrap_servers, ep.mqtt.host, ep.mqtt.port, ep.mqtt.username, ep.mqtt.password, "shared"
        )
        return
    kafka = KafkaServer(workdir / "kafka")
    mosquitto = MosquittoServer(workdir / "mosquitto")
    password = uuid.uuid4().hex
    mosquitto.add_user("bench", password)
    for server in (kafka, mosquitto):
        server.install()
        server.start()
    try:
        kafka.wait_ready()
        mosquitto.wait_ready()
        yield Servers(f"127.0.0.1:{kafka.port}", "127.0.0.1", mosquitto.port, "bench", password, "own")
    finally:
        mosquitto.stop()
        kafka.stop()


class Bridge:
    """One ``telestack mqtt-bridge`` process and its /metrics."""

    def __init__(self, srv: Servers, workdir: Path, unique: str, window: int) -> None:
        self.port = free_port()
        self.log = open(workdir / "bridge.log", "ab")  # noqa: SIM115 - closed in stop()
        self.args = [
            str(Path(sys.executable).parent / "telestack"),
            "mqtt-bridge",
            f"--mqtt-bridge.rules-file={workdir / 'rules.yaml'}",
            f"--mqtt-bridge.client-id=bench-{unique}",
            f"--mqtt-bridge.inflight-window={window}",
            f"--mqtt-bridge.http.port={self.port}",
            f"--kafka.topics.telemetry=bench-{unique}",
            f"--kafka.topics.dlq=bench-{unique}.dlq",
            f"--kafka.topics.commands=bench-{unique}.commands",
            "--log.format=json",
        ]
        self.env = {
            **os.environ,
            "TELESTACK_KAFKA__BOOTSTRAP_SERVERS": srv.bootstrap,
            "TELESTACK_MQTT__HOST": srv.mqtt_host,
            "TELESTACK_MQTT__PORT": str(srv.mqtt_port),
            "TELESTACK_MQTT__USERNAME": srv.mqtt_user,
            "TELESTACK_MQTT__PASSWORD": srv.mqtt_password,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, env=self.env, stdout=self.log, stderr=self.log)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return 0.0

    def acked(self) -> float:
        try:
            return self.metric("telestack_mqtt_bridge_messages_acked_total")
        except OSError:
            return 0.0

    def wait_connected(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.metric("telestack_mqtt_bridge_connected") == 1:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the bridge did not connect; see bridge.log")

    def cpu_s(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        self.log.close()


def write_payloads(workdir: Path, messages: int, publishers: int, phase: str) -> list[Path]:
    """One file of JSON reports per publisher, one message a line (mosquitto_pub -l)."""
    files = []
    for p in range(publishers):
        path = workdir / f"{phase}-{p}.txt"
        with open(path, "w") as out:
            for seq in range(messages // publishers):
                power = 40 + (seq % 100) / 10
                ws = round(power - 0.3, 1)
                out.write(f'{{"seq": {seq}, "power": {power}, "Ws": {ws}, "relay": true, "temperature": 23.44}}\n')
        files.append(path)
    return files


def publish(srv: Servers, workdir: Path, unique: str, files: list[Path], phase: str) -> float:
    """Publish every line of `files` at QoS 1, one mosquitto_pub process per file; returns the seconds taken."""
    tool = shutil.which("mosquitto_pub")
    if tool is None:
        raise RuntimeError("mosquitto_pub is missing (apt-get install mosquitto-clients)")
    # Options from a config file, so the password is not on a command line.
    config_home = workdir / "xdg"
    config_home.mkdir(exist_ok=True)
    (config_home / "mosquitto_pub").write_text(
        f"-h {srv.mqtt_host}\n-p {srv.mqtt_port}\n-u {srv.mqtt_user}\n-P {srv.mqtt_password}\n-q 1\n-M 1000\n-V 5\n"
    )
    (config_home / "mosquitto_pub").chmod(0o600)
    started = time.monotonic()
    procs = []
    for p, path in enumerate(files):
        with open(path, "rb") as stdin:
            procs.append(
                subprocess.Popen(
                    [tool, "-l", "-t", f"bench/{phase}-dev{p}/report", "-i", f"bench-pub-{unique}-{phase}-{p}"],
                    stdin=stdin,
                    env={**os.environ, "XDG_CONFIG_HOME": str(config_home)},
                )
            )
    for proc in procs:
        if proc.wait(600) != 0:
            raise RuntimeError(f"mosquitto_pub exited with {proc.returncode}")
    return time.monotonic() - started


def measure(bridge: Bridge, target: float, timeout_s: float) -> tuple[float, float, float]:
    """Wait until `target` messages are acked; (messages, seconds, cpu seconds) from the first ack seen."""
    deadline = time.monotonic() + timeout_s
    first: tuple[float, float, float] | None = None
    while True:
        acked = bridge.acked()
        now, cpu = time.monotonic(), bridge.cpu_s()
        if first is None and acked > 0:
            first = (acked, now, cpu)
        if acked >= target:
            assert first is not None
            return acked - first[0], now - first[1], cpu - first[2]
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {acked:.0f} of {target:.0f} messages acked within {timeout_s:.0f} s")
        time.sleep(0.1)  # each scrape costs the bridge a little CPU


def topic_records(srv: Servers, topic: str) -> int:
    from confluent_kafka import TopicPartition

    admin = admin_client(KafkaSettings(bootstrap_servers=srv.bootstrap))
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": srv.bootstrap, "group.id": f"bench-count-{uuid.uuid4().hex[:6]}"})
    try:
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def delete_topics(srv: Servers, topics: list[str]) -> None:
    """Leave the (possibly shared) Kafka as it was."""
    admin = admin_client(KafkaSettings(bootstrap_servers=srv.bootstrap))
    for future in admin.delete_topics(topics, operation_timeout=30).values():
        with contextlib.suppress(Exception):
            future.result(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mqtt", description=__doc__)
    parser.add_argument(
        "--messages", type=int, default=80_000, help="messages per phase (default 80000; Mosquitto queues 100000)"
    )
    parser.add_argument("--publishers", type=int, default=4, help="mosquitto_pub processes (default 4)")
    parser.add_argument("--window", type=int, default=2000, help="bridge in-flight window (default 2000)")
    args = parser.parse_args(argv)
    unique = uuid.uuid4().hex[:8]
    messages = args.messages // args.publishers * args.publishers
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp, servers(Path(tmp)) as srv:
        workdir = Path(tmp)
        (workdir / "rules.yaml").write_text(RULES)
        ensure_topics(  # the bridge checks at start that every topic it writes exists
            KafkaSettings(bootstrap_servers=srv.bootstrap),
            {f"bench-{unique}": 6, f"bench-{unique}.dlq": 1, f"bench-{unique}.commands": 1},
        )

        # Phase 1: the session exists, the bridge is away, Mosquitto queues; then the bridge drains.
        bridge = Bridge(srv, workdir, unique, args.window)
        bridge.start()
        bridge.wait_connected()
        bridge.stop()
        backlog = write_payloads(workdir, messages, args.publishers, "backlog")
        live = write_payloads(workdir, messages, args.publishers, "live")
        publish_s = publish(srv, workdir, unique, backlog, "backlog")
        bridge = Bridge(srv, workdir, unique, args.window)
        bridge.start()
        try:
            drained, drain_s, drain_cpu = measure(bridge, messages, timeout_s=300)
            # Phase 2: publishers and bridge at the same time.
            started = time.monotonic()
            cpu0 = bridge.cpu_s()
            publish(srv, workdir, unique, live, "live")
            measure(bridge, 2 * messages, timeout_s=300)
            live_s = time.monotonic() - started
            live_cpu = bridge.cpu_s() - cpu0
        except RuntimeError:
            sys.stderr.write((workdir / "bridge.log").read_text(errors="replace")[-4000:])
            raise
        finally:
            bridge.stop()
        records = topic_records(srv, f"bench-{unique}")
        delete_topics(srv, [f"bench-{unique}", f"bench-{unique}.dlq", f"bench-{unique}.commands"])
    figures = {
        "messages": 2 * messages,
        "msgs_per_s": round(drained / drain_s),
        "cpu_percent": round(100 * drain_cpu / drain_s),
        # Less sensitive to what else runs on the machine: the bridge's CPU time per message.
        "cpu_us_per_msg": round(1e6 * drain_cpu / drained, 1),
        "msgs_per_cpu_s": round(drained / drain_cpu),
        "live_msgs_per_s": round(messages / live_s),
        "live_cpu_percent": round(100 * live_cpu / live_s),
        "backlog_publish_msgs_per_s": round(messages / publish_s),
        "kafka_records": records,
        "duplicates": records - 2 * messages,
        "inflight_window": args.window,
        "servers": srv.origin,
    }
    sys.stdout.write(
        f"bridge, backlog drain: {figures['msgs_per_s']:>8,} msg/s at {figures['cpu_percent']}% CPU "
        f"(QoS 1, acked after Kafka, window {args.window})\n"
        f"                       {figures['cpu_us_per_msg']} µs of bridge CPU per message, i.e. "
        f"{figures['msgs_per_cpu_s']:,} msg per CPU-second\n"
        f"bridge, live:          {figures['live_msgs_per_s']:>8,} msg/s at {figures['live_cpu_percent']}% CPU "
        f"({args.publishers} mosquitto_pub publishers on the same machine)\n"
        f"publishers alone:      {figures['backlog_publish_msgs_per_s']:>8,} msg/s\n"
        f"Kafka records: {records:,} for {2 * messages:,} messages ({figures['duplicates']} duplicates)\n"
    )
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

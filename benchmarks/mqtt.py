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

Telegraf side by side (unless ``--no-telegraf``): the same backlog (same payloads, same mosquitto_pub
publishers, same broker, under another topic root) is drained by Telegraf's ``inputs.mqtt_consumer`` (QoS 1,
persistent session, ``max_undelivered_messages`` = ``--telegraf-undelivered``) into ``outputs.kafka``
(``required_acks = -1``, as the bridge's ``acks=all``) on the same Kafka, with the same tags (device from the
topic) and fields. Its rate is the growth of its Kafka topic, from the first record seen to the last:
``telegraf_msgs_per_s``, and ``ratio_vs_telegraf`` = ``msgs_per_s`` / ``telegraf_msgs_per_s``; as the
machine is shared, ``cpu_ratio_vs_telegraf`` compares messages per CPU-second too.
``--payload line`` sends line protocol instead of JSON (the bridge's ``format: line``, Telegraf's influx parser).
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.telegraf import TelegrafAgent, toml_string
from telestack.core.kafka import admin_client, ensure_topics
from telestack.core.settings import KafkaSettings
from telestack.native import Endpoints
from telestack.native.servers import KafkaServer, MosquittoServer, free_port

__all__ = ["main"]

RULES = {
    "json": """
rules:
  - name: bench-plug
    topic: bench/{device}/report
    format: json
    measurement: plug
    types: {seq: int, power: float, Ws: float, relay: bool, temperature: float}
""",
    "line": """
rules:
  - name: bench-plug
    topic: bench/{device}/report
    format: line
""",
}

# The same mapping in Telegraf: device tag from the topic, no topic tag, the same typed fields.
TELEGRAF_PARSER = {
    "json": """  data_format = "json_v2"
  [[inputs.mqtt_consumer.json_v2]]
    measurement_name = "plug"
"""
    + "".join(
        f'    [[inputs.mqtt_consumer.json_v2.field]]\n      path = "{name}"\n      type = "{kind}"\n'
        for name, kind in (
            ("seq", "int"),
            ("power", "float"),
            ("Ws", "float"),
            ("relay", "bool"),
            ("temperature", "float"),
        )
    ),
    "line": '  data_format = "influx"\n',
}


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


@contextlib.contextmanager
def profiled(bridge: Bridge, out: Path | None) -> Iterator[None]:
    """py-spy samples the bridge process meanwhile (100 Hz, non-blocking), collapsed stacks to `out`."""
    if out is None:
        yield
        return
    assert bridge.process is not None
    tool = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args = [tool, "record", "--pid", str(bridge.process.pid), "--rate", "100", "--nonblocking", "--format", "raw"]
    spy = subprocess.Popen([*args, "--output", str(out)], stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)


def write_payloads(workdir: Path, messages: int, publishers: int, phase: str, payload: str = "json") -> list[Path]:
    """One file of reports per publisher, one message a line (mosquitto_pub -l): JSON or line protocol."""
    files = []
    for p in range(publishers):
        path = workdir / f"{phase}-{p}.txt"
        with open(path, "w") as out:
            for seq in range(messages // publishers):
                power = 40 + (seq % 100) / 10
                ws = round(power - 0.3, 1)
                if payload == "line":
                    out.write(f"plug seq={seq}i,power={power},Ws={ws},relay=true,temperature=23.44\n")
                else:
                    out.write(f'{{"seq": {seq}, "power": {power}, "Ws": {ws}, "relay": true, "temperature": 23.44}}\n')
        files.append(path)
    return files


def publish(srv: Servers, workdir: Path, unique: str, files: list[Path], phase: str, root: str = "bench") -> float:
    """Publish every line of `files` at QoS 1 to ``<root>/<phase>-dev<n>/report``, one mosquitto_pub process per
    file; returns the seconds taken."""
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
                    [tool, "-l", "-t", f"{root}/{phase}-dev{p}/report", "-i", f"bench-pub-{unique}-{phase}-{p}"],
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
    return measure_progress(bridge.acked, bridge.cpu_s, target, timeout_s)


def measure_progress(
    count: Callable[[], float], cpu_s: Callable[[], float], target: float, timeout_s: float
) -> tuple[float, float, float]:
    """Wait until `count()` reaches `target`; (messages, seconds, cpu seconds) from the first one seen."""
    deadline = time.monotonic() + timeout_s
    first: tuple[float, float, float] | None = None
    while True:
        acked = count()
        now, cpu = time.monotonic(), cpu_s()
        if first is None and acked > 0:
            first = (acked, now, cpu)
        if acked >= target:
            assert first is not None
            return acked - first[0], now - first[1], cpu - first[2]
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {acked:.0f} of {target:.0f} messages acked within {timeout_s:.0f} s")
        time.sleep(0.1)  # each scrape costs the bridge a little CPU


class RecordCounter:
    """The record count of a Kafka topic (sum of its partitions' watermarks), read cheaply and repeatedly."""

    def __init__(self, srv: Servers, topic: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        admin = admin_client(KafkaSettings(bootstrap_servers=srv.bootstrap))
        partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
        self.partitions = [TopicPartition(topic, p) for p in partitions]
        self.consumer = Consumer(
            {"bootstrap.servers": srv.bootstrap, "group.id": f"bench-count-{uuid.uuid4().hex[:6]}"}
        )

    def __call__(self) -> float:
        total = 0
        for tp in self.partitions:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            total += high - low
        return float(total)

    def close(self) -> None:
        self.consumer.close()


def first_record(srv: Servers, topic: str) -> str:
    """One record of `topic` (to show that both sides wrote the same line), or "" if none came in 10 s."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": srv.bootstrap,
            "group.id": f"bench-peek-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                return (msg.value() or b"").decode(errors="replace").strip()
        return ""
    finally:
        consumer.close()


def topic_records(srv: Servers, topic: str) -> int:
    counter = RecordCounter(srv, topic)
    try:
        return int(counter())
    finally:
        counter.close()


def telegraf_config(srv: Servers, unique: str, topic: str, payload: str, undelivered: int, batch: int) -> str:
    """Telegraf's mqtt_consumer → outputs.kafka, mapping as the bridge's rule does (see TELEGRAF_PARSER)."""
    return f"""[agent]
  interval = "10s"
  flush_interval = "100ms"
  flush_jitter = "0s"
  metric_batch_size = {batch}
  metric_buffer_limit = {max(100_000, 4 * undelivered)}
  omit_hostname = true
  debug = true

[[inputs.mqtt_consumer]]
  servers = [{toml_string(f"tcp://{srv.mqtt_host}:{srv.mqtt_port}")}]
  topics = ["benchtg/+/report"]
  topic_tag = ""
  qos = 1
  persistent_session = true
  client_id = {toml_string(f"bench-tg-{unique}")}
  username = {toml_string(srv.mqtt_user)}
  password = {toml_string(srv.mqtt_password)}
  max_undelivered_messages = {undelivered}
{TELEGRAF_PARSER[payload]}  [[inputs.mqtt_consumer.topic_parsing]]
    topic = "benchtg/+/report"
    tags = "_/device/_"

[[outputs.kafka]]
  brokers = [{toml_string(srv.bootstrap)}]
  topic = {toml_string(topic)}
  routing_tag = "device"
  required_acks = -1
  compression_codec = 4
  data_format = "influx"
"""


def run_telegraf(
    srv: Servers, workdir: Path, unique: str, messages: int, publishers: int, payload: str, undelivered: int
) -> dict[str, float]:
    """The backlog phase with Telegraf in the bridge's place: session, away, publish, drain; its figures."""
    topic = f"bench-{unique}-telegraf"
    ensure_topics(KafkaSettings(bootstrap_servers=srv.bootstrap), {topic: 6})
    config = telegraf_config(srv, unique, topic, payload, undelivered, batch=1000)
    agent = TelegrafAgent(workdir, "telegraf", config)
    agent.start()
    try:
        agent.wait_log("Connected")
    finally:
        agent.stop()
    files = write_payloads(workdir, messages, publishers, "tg-backlog", payload)
    publish(srv, workdir, unique, files, "tg-backlog", root="benchtg")
    counter = RecordCounter(srv, topic)
    agent = TelegrafAgent(workdir, "telegraf", config)
    agent.start()
    try:

        def count() -> float:
            agent.check_alive()
            return counter()

        drained, drain_s, drain_cpu = measure_progress(count, agent.cpu_s, messages, timeout_s=300)
        time.sleep(1)  # anything beyond `messages` would be a duplicate
        records = int(counter())
    finally:
        agent.stop()
        counter.close()
    sys.stdout.write(f"a record of Telegraf's: {first_record(srv, topic)}\n")
    delete_topics(srv, [topic])
    return {
        "telegraf_msgs_per_s": round(drained / drain_s),
        "telegraf_cpu_percent": round(100 * drain_cpu / drain_s),
        "telegraf_cpu_us_per_msg": round(1e6 * drain_cpu / drained, 1),
        "telegraf_kafka_records": records,
        "telegraf_duplicates": records - messages,
        "telegraf_max_undelivered": undelivered,
    }


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
    parser.add_argument("--payload", choices=("json", "line"), default="json", help="message format (default json)")
    parser.add_argument("--no-telegraf", action="store_true", help="skip the side-by-side Telegraf phase")
    parser.add_argument(
        "--profile",
        type=Path,
        help="record the bridge's backlog drain with py-spy (pip install py-spy) into this file, collapsed stacks",
    )
    parser.add_argument(
        "--telegraf-undelivered",
        type=int,
        default=5000,
        help="Telegraf's max_undelivered_messages (default 5000; metric_batch_size is 1000)",
    )
    args = parser.parse_args(argv)
    unique = uuid.uuid4().hex[:8]
    messages = args.messages // args.publishers * args.publishers
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp, servers(Path(tmp)) as srv:
        workdir = Path(tmp)
        (workdir / "rules.yaml").write_text(RULES[args.payload])
        ensure_topics(  # the bridge checks at start that every topic it writes exists
            KafkaSettings(bootstrap_servers=srv.bootstrap),
            {f"bench-{unique}": 6, f"bench-{unique}.dlq": 1, f"bench-{unique}.commands": 1},
        )

        # Phase 1: the session exists, the bridge is away, Mosquitto queues; then the bridge drains.
        bridge = Bridge(srv, workdir, unique, args.window)
        bridge.start()
        bridge.wait_connected()
        bridge.stop()
        backlog = write_payloads(workdir, messages, args.publishers, "backlog", args.payload)
        live = write_payloads(workdir, messages, args.publishers, "live", args.payload)
        publish_s = publish(srv, workdir, unique, backlog, "backlog")
        bridge = Bridge(srv, workdir, unique, args.window)
        bridge.start()
        try:
            with profiled(bridge, args.profile):
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
        sys.stdout.write(f"a record of the bridge's: {first_record(srv, f'bench-{unique}')}\n")
        delete_topics(srv, [f"bench-{unique}", f"bench-{unique}.dlq", f"bench-{unique}.commands"])
        telegraf: dict[str, float] = {}
        if not args.no_telegraf:
            telegraf = run_telegraf(
                srv, workdir, unique, messages, args.publishers, args.payload, args.telegraf_undelivered
            )
    figures: dict[str, object] = {
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
        "payload": args.payload,
        "servers": srv.origin,
        **telegraf,
    }
    if telegraf:
        figures["ratio_vs_telegraf"] = round(drained / drain_s / telegraf["telegraf_msgs_per_s"], 2)
        # Messages per CPU-second, bridge / Telegraf: what a loaded, shared machine distorts least.
        figures["cpu_ratio_vs_telegraf"] = round(telegraf["telegraf_cpu_us_per_msg"] / figures["cpu_us_per_msg"], 2)
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
    if telegraf:
        sys.stdout.write(
            f"Telegraf, backlog drain: {telegraf['telegraf_msgs_per_s']:>6,} msg/s at "
            f"{telegraf['telegraf_cpu_percent']}% CPU, {telegraf['telegraf_cpu_us_per_msg']} µs per message "
            f"(mqtt_consumer max_undelivered_messages {args.telegraf_undelivered} → outputs.kafka acks -1); "
            f"{telegraf['telegraf_kafka_records']:,} records for {messages:,} messages\n"
            f"bridge / Telegraf: {figures['ratio_vs_telegraf']} in msg/s, "
            f"{figures['cpu_ratio_vs_telegraf']} in messages per CPU-second\n"
        )
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

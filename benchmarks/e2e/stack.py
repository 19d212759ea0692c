"""The whole pipeline as real processes, for load runs and fault injection.

`E2EStack` runs on a set of servers (`telestack.native.NativeStack`, its own or one given) and starts, as
``telestack`` processes: ``can-gateway`` (three live buses, udp_multicast), ``mqtt-bridge`` and
``influx-writer``, configured through one YAML file in the run directory. It drives the load (`can_load`,
`mqtt_load` as processes), watches the run (metrics, CPU and memory, what is visible in InfluxDB, what is
in Kafka) and finally counts, from InfluxDB, every sequence number: missing and duplicated.
"""

from __future__ import annotations

import array
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka
import httpx
import yaml

from benchmarks.e2e.influx import InfluxQuery, SeqCount
from benchmarks.e2e.processes import ServiceProcess, metric_sum, usage_of
from telestack.core.kafka import ensure_topics
from telestack.core.settings import KafkaSettings
from telestack.native import Endpoints, NativeStack
from telestack.native.servers import free_port, free_udp_port

__all__ = ["BUSES", "E2EStack", "LoadResult", "LoadSpec", "RunObservations"]

HERE = Path(__file__).resolve().parent
DBC = HERE / "bench_seq.dbc"
RULES = HERE / "mqtt_rules.yaml"
BUSES = ("powertrain", "chassis", "battery")
SERVICES = ("can-gateway", "mqtt-bridge", "influx-writer")


@dataclass(frozen=True)
class LoadSpec:
    can_rate: float = 3000.0  # frames/s per bus
    devices: int = 50
    device_rate: float = 10.0  # messages/s per device
    duration_s: float = 60.0  # 0: until stopped


@dataclass
class LoadResult:
    """What the load processes say they sent (the expected sequence numbers) and when."""

    can_sent: dict[str, int] = field(default_factory=dict)
    mqtt_sent: dict[str, int] = field(default_factory=dict)
    mqtt_unacked: int = 0
    can_seconds: float = 0.0  # how long the CAN load ran
    mqtt_seconds: float = 0.0
    send_times: dict[str, array.array[float]] = field(default_factory=dict)  # series → seq → send time

    def expected(self) -> dict[str, int]:
        return {
            **{f"can/{b}": n for b, n in self.can_sent.items()},
            **{f"mqtt/{d}": n for d, n in self.mqtt_sent.items()},
        }


@dataclass
class RunObservations:
    """What the watchers saw during a run."""

    samples: list[dict[str, Any]] = field(default_factory=list)  # one per second: metrics, CPU, RSS
    visible: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # (time, newest seq per series)
    kafka_delays: list[tuple[str, float, float]] = field(default_factory=list)  # (kind, source time, seen)
    poll_errors: int = 0


class LoadProcess:
    """A load generator process; its JSON progress lines are read in a thread."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self.log, env=env, cwd=Path.cwd(), start_new_session=True
        )
        self.progress: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if message.get("done"):
                self.final = message
            else:
                self.progress.append(message)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()

    def wait(self, timeout_s: float = 120) -> dict[str, Any]:
        self.process.wait(timeout_s)
        self._thread.join(10)
        self.log.close()
        if self.final is None:
            raise RuntimeError(f"load process {self.process.args!r} ended without its totals")
        return self.final


class E2EStack:
    """Servers, the three services and the load of one run directory."""

    def __init__(
        self,
        run_dir: Path,
        *,
        endpoints: Endpoints | None = None,
        native: NativeStack | None = None,
        service_config: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.name = name or f"e2e-{uuid.uuid4().hex[:8]}"
        self.native = native
        self.endpoints = endpoints
        self.service_config = service_config or {}
        self.services: dict[str, ServiceProcess] = {}
        self.ports = {bus: free_udp_port() for bus in BUSES}
        self.bucket = self.name
        self.group = f"{self.name}-writer"
        self.topics = {
            "telemetry": f"{self.name}.telemetry",
            "dlq": f"{self.name}.dlq",
            "can_raw": f"{self.name}.can.raw",
            "commands": f"{self.name}.commands",  # the bridge checks at start that it exists (device acks)
        }
        self.query: InfluxQuery | None = None
        self._watchers: list[threading.Thread] = []
        self._loads: list[LoadProcess] = []
        self._watching = threading.Event()
        self._watch_started = time.time()
        self.observations = RunObservations()

    # --- servers, topics, bucket, config ------------------------------------------------------------------

    def start_servers(self) -> Endpoints:
        if self.endpoints is None:
            self.native = self.native or NativeStack(self.run_dir / "servers")
            self.endpoints = self.native.start()
        return self.endpoints

    def prepare(self) -> None:
        endpoints = self.start_servers()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        kafka = KafkaSettings(bootstrap_servers=endpoints.kafka.bootstrap_servers)
        ensure_topics(
            kafka,
            {self.topics["telemetry"]: 6, self.topics["dlq"]: 1, self.topics["can_raw"]: 3, self.topics["commands"]: 1},
        )
        self._create_bucket()
        self.query = InfluxQuery(endpoints.influx, self.bucket)
        self.config_path = self.run_dir / "telestack.yaml"
        self.config_path.write_text(yaml.safe_dump(self._config(), sort_keys=False))

    def _create_bucket(self) -> None:
        influx = self.endpoints.influx  # type: ignore[union-attr]
        with httpx.Client(base_url=influx.url, headers={"Authorization": f"Token {influx.token}"}, timeout=30) as http:
            org_id = http.get("/api/v2/orgs", params={"org": influx.org}).json()["orgs"][0]["id"]
            response = http.post("/api/v2/buckets", json={"orgID": org_id, "name": self.bucket, "retentionRules": []})
            if response.status_code not in (201, 422):  # 422: it exists (a rerun in the same directory)
                raise RuntimeError(f"cannot create bucket {self.bucket}: {response.status_code} {response.text}")

    def _config(self) -> dict[str, Any]:
        http_ports = {name: free_port() for name in SERVICES}
        self.http_ports = http_ports
        config: dict[str, Any] = {
            "log": {"level": "INFO", "format": "json"},
            "kafka": {"topics": dict(self.topics), "linger_ms": 5},
            "influx": {"bucket": self.bucket},
            "can_gateway": {
                "vehicle": self.name,
                "databases": [str(DBC)],
                "buses": [
                    {"name": bus, "interface": "udp_multicast", "channel": "239.74.163.2", "options": {"port": port}}
                    for bus, port in self.ports.items()
                ],
                "mapping": {"BenchSeq": {"measurement": "bench_can", "rename": {"Seq": "seq"}, "exclude": ["Pad"]}},
                "spool": {"directory": str(self.run_dir / "spool"), "stall_timeout_s": 5, "retry_interval_s": 1},
                "reload_interval_s": 0,
                "http": {"port": http_ports["can-gateway"]},
            },
            "mqtt_bridge": {
                "rules_file": str(RULES),
                "client_id": f"{self.name}-bridge",
                "ack_topic": None,
                "http": {"port": http_ports["mqtt-bridge"]},
            },
            "influx_writer": {"group_id": self.group, "http": {"port": http_ports["influx-writer"]}},
        }
        for section, values in self.service_config.items():
            merged = config.setdefault(section, {})
            merged.update(values)
        return config

    def env(self) -> dict[str, str]:
        assert self.endpoints is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELESTACK_")}
        env.update(self.endpoints.env())
        env["TELESTACK_INFLUX__BUCKET"] = self.bucket  # the environment wins over the YAML file
        env["TELESTACK_CONFIG"] = str(self.config_path)
        return env

    # --- services ---------------------------------------------------------------------------------------

    def start_services(self, names: tuple[str, ...] = SERVICES, timeout_s: float = 60) -> None:
        for name in names:
            service = self.services.get(name)
            if service is None:
                service = self.services[name] = ServiceProcess(
                    name, [name], self.env(), self.http_ports[name], self.run_dir / "logs"
                )
            service.start()
        for name in names:
            self.services[name].wait_healthy(timeout_s)
        if "mqtt-bridge" in names:  # healthy once connected; messages count from its SUBACK on
            self.wait_bridge_subscribed(timeout_s)
        if "influx-writer" in names:  # healthy before its consumer group gave it partitions
            self.wait_writer_assigned(timeout_s)

    def wait_writer_assigned(self, timeout_s: float = 30) -> None:
        writer = self.services["influx-writer"]
        deadline = time.monotonic() + timeout_s
        while not re.search(r'"[1-9][0-9]* partitions assigned', writer.health()[1]):
            writer.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"influx-writer got no partition within {timeout_s:.0f} s: {writer.health()[1]}")
            time.sleep(0.1)

    def wait_bridge_subscribed(self, timeout_s: float = 30) -> None:
        bridge = self.services["mqtt-bridge"]
        deadline = time.monotonic() + timeout_s
        while "connected and subscribed" not in bridge.health()[1]:
            bridge.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"mqtt-bridge not subscribed within {timeout_s:.0f} s: {bridge.health()[1]}")
            time.sleep(0.05)

    def stop_services(self) -> dict[str, int | None]:
        return {name: service.stop() for name, service in self.services.items()}

    # --- load -------------------------------------------------------------------------------------------

    def start_load(self, spec: LoadSpec, out: Path) -> tuple[LoadProcess | None, LoadProcess | None]:
        assert self.endpoints is not None
        python = sys.executable
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        can = mqtt = None
        if spec.can_rate > 0:
            can = LoadProcess(
                [
                    python,
                    "-m",
                    "benchmarks.e2e.can_load",
                    "--buses",
                    ",".join(BUSES),
                    "--ports",
                    ",".join(str(self.ports[b]) for b in BUSES),
                    "--rate",
                    str(spec.can_rate),
                    "--duration",
                    str(spec.duration_s),
                    "--out",
                    str(out),
                ],
                self.env(),
                logs / "can-load.log",
            )
        if spec.devices > 0 and spec.device_rate > 0:
            mqtt_endpoint = self.endpoints.mqtt
            mqtt = LoadProcess(
                [
                    python,
                    "-m",
                    "benchmarks.e2e.mqtt_load",
                    "--host",
                    mqtt_endpoint.host,
                    "--port",
                    str(mqtt_endpoint.port),
                    "--username",
                    mqtt_endpoint.username,
                    "--devices",
                    str(spec.devices),
                    "--rate",
                    str(spec.device_rate),
                    "--prefix",
                    self.name,
                    "--duration",
                    str(spec.duration_s),
                    "--out",
                    str(out),
                ],
                self.env(),
                logs / "mqtt-load.log",
            )
        self._loads += [p for p in (can, mqtt) if p is not None]
        return can, mqtt

    @staticmethod
    def collect_load(
        can: LoadProcess | None, mqtt: LoadProcess | None, out: Path, timeout_s: float = 180
    ) -> LoadResult:
        result = LoadResult()
        if can is not None:
            final = can.wait(timeout_s)
            result.can_sent = dict(final["sent"])
            result.can_seconds = float(final["seconds"])
            for bus in result.can_sent:
                result.send_times[f"can/{bus}"] = _read_times(out / f"can-{bus}.times")
        if mqtt is not None:
            final = mqtt.wait(timeout_s)
            result.mqtt_sent = dict(final["per_device"])
            result.mqtt_unacked = int(final["unacked"])
            result.mqtt_seconds = float(final["seconds"])
            for device in result.mqtt_sent:
                result.send_times[f"mqtt/{device}"] = _read_times(out / f"mqtt-{device}.times")
        return result

    # --- watching ---------------------------------------------------------------------------------------

    def start_watching(self, poll_s: float = 0.25, kafka_tail: bool = True) -> None:
        self._watching.clear()
        self._watch_started = time.time()
        self.observations = RunObservations()
        self._watchers = [
            threading.Thread(target=self._sample_loop, name="sampler", daemon=True),
            threading.Thread(target=self._poll_loop, args=(poll_s,), name="influx-poller", daemon=True),
        ]
        if kafka_tail:
            self._watchers.append(threading.Thread(target=self._kafka_tail, name="kafka-tail", daemon=True))
        for thread in self._watchers:
            thread.start()

    def progress(self) -> str:
        """One line on where the run stands: each stage's count so far and how far InfluxDB is behind."""
        obs = self.observations
        parts = [f"{time.time() - self._watch_started:5.0f} s"]
        if obs.samples:
            metrics = obs.samples[-1]["metrics"]
            for name, key in (("can-gateway", "frames"), ("mqtt-bridge", "messages"), ("influx-writer", "lines")):
                if key in metrics.get(name, {}):
                    parts.append(f"{name} {metrics[name][key]:,.0f} {key}")
        if obs.visible:
            parts.append(f"queryable {sum(n + 1 for n in obs.visible[-1][1].values()):,} points")
        if obs.kafka_delays:
            _, source, seen = obs.kafka_delays[-1]
            parts.append(f"source→Kafka {1000 * (seen - source):,.0f} ms")
        return ", ".join(parts)

    def stop_watching(self) -> RunObservations:
        self._watching.set()
        for thread in self._watchers:
            thread.join(15)
        return self.observations

    def server_pids(self) -> dict[str, int]:
        if self.native is None:
            return {}
        return {
            s.name: s.process.pid for s in self.native.servers if s.process is not None and s.process.poll() is None
        }

    def sample(self) -> dict[str, Any]:
        """Metrics, CPU seconds and RSS of every process now."""
        sample: dict[str, Any] = {"t": time.time(), "cpu_s": {}, "rss": {}, "metrics": {}}
        for name, service in self.services.items():
            usage = service.usage()
            if usage is not None:
                sample["cpu_s"][name] = usage.cpu_s + service.cpu_before_restarts
                sample["rss"][name] = usage.rss_bytes
            sample["metrics"][name] = _stage_metrics(name, service.metrics())
        for name, pid in self.server_pids().items():
            usage = usage_of(pid)
            if usage is not None:
                sample["cpu_s"][name] = usage.cpu_s
                sample["rss"][name] = usage.rss_bytes
        return sample

    def add_load_pids(self, **pids: int) -> None:
        self._load_pids = pids

    def _sample_loop(self) -> None:
        while not self._watching.is_set():
            sample = self.sample()
            for name, pid in getattr(self, "_load_pids", {}).items():
                usage = usage_of(pid)
                if usage is not None:
                    sample["cpu_s"][name] = usage.cpu_s
                    sample["rss"][name] = usage.rss_bytes
            self.observations.samples.append(sample)
            self._watching.wait(1.0)

    def _poll_loop(self, poll_s: float) -> None:
        assert self.query is not None
        while not self._watching.is_set():
            started = time.monotonic()
            try:
                # Points carry their source time: a window from the start of watching, so a pipeline running
                # minutes behind the sender is still seen catching up (a fixed last-minute window would not).
                newest = self.query.newest_seqs(window_s=int(time.time() - self._watch_started) + 120)
                self.observations.visible.append((time.time(), newest))
            except Exception:  # InfluxDB stopped on purpose (fault tests): try again next time
                self.observations.poll_errors += 1
            self._watching.wait(max(0.0, poll_s - (time.monotonic() - started)))

    def _kafka_tail(self) -> None:
        """Source time → consumable from Kafka, for every line of the telemetry topic from now on."""
        assert self.endpoints is not None
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": self.endpoints.kafka.bootstrap_servers,
                "group.id": f"{self.name}-tail-{uuid.uuid4().hex[:6]}",
                "auto.offset.reset": "latest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        consumer.subscribe([self.topics["telemetry"]])
        delays = self.observations.kafka_delays
        try:
            while not self._watching.is_set():
                for msg in consumer.consume(1000, 0.01):  # consume() waits to fill its batch: keep it short
                    if msg.error() is not None:
                        continue
                    seen = time.time()
                    for line in (msg.value() or b"").split(b"\n"):
                        stamp = line.rpartition(b" ")[2]
                        if stamp.isdigit():
                            kind = "can" if line.startswith(b"bench_can") else "mqtt"
                            delays.append((kind, int(stamp) / 1e9, seen))
        finally:
            consumer.close()

    # --- after the run ----------------------------------------------------------------------------------

    def writer_lag(self) -> int:
        """Records of the telemetry topic not yet committed by the writer group (all partitions)."""
        assert self.endpoints is not None
        consumer = confluent_kafka.Consumer(
            {"bootstrap.servers": self.endpoints.kafka.bootstrap_servers, "group.id": self.group}
        )
        try:
            topic = self.topics["telemetry"]
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            tps = [confluent_kafka.TopicPartition(topic, p) for p in partitions]
            committed = consumer.committed(tps, timeout=10)
            lag = 0
            for tp in committed:
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                position = tp.offset if tp.offset >= 0 else low
                lag += max(0, high - position)
            return lag
        finally:
            consumer.close()

    def wait_drained(self, expected: dict[str, int], timeout_s: float = 120, stall_s: float | None = None) -> float:
        """Seconds until the writer's lag is 0 and every series shows its last sequence number.

        `timeout_s` bounds the whole wait; with `stall_s`, the wait goes on past it for as long as the pipeline
        makes progress (lag falling or newer points visible), and gives up after `stall_s` without any.
        """
        assert self.query is not None
        started = last_progress = time.monotonic()
        last, mark = "", None
        while True:
            now = time.monotonic()
            if now - started >= timeout_s and (stall_s is None or now - last_progress >= stall_s):
                break
            try:
                # While the poller runs, its answers are used: a second query stream would slow both down.
                watching = self._watchers and not self._watching.is_set() and self.observations.visible
                newest = self.observations.visible[-1][1] if watching else self.query.newest_seqs(window_s=3 * 86_400)
                behind = {s: n for s, n in expected.items() if n and newest.get(s, -1) < n - 1}
                lag = self.writer_lag()
            except Exception as exc:  # a server still coming back
                last = repr(exc)
                time.sleep(0.5)
                continue
            if not behind and lag == 0:
                return time.monotonic() - started
            if (lag, sum(newest.values())) != mark:
                mark, last_progress = (lag, sum(newest.values())), time.monotonic()
            last = f"lag {lag}, {len(behind)} series behind (e.g. {dict(list(behind.items())[:3])})"
            time.sleep(0.5)
        waited = time.monotonic() - started
        raise TimeoutError(f"not drained after {waited:.0f} s: {last}")

    def service_events(self) -> dict[str, dict[str, int]]:
        """Warnings and errors each service logged so far, counted by event: what it went through."""
        events: dict[str, dict[str, int]] = {}
        for name, service in self.services.items():
            counted: dict[str, int] = {}
            if service.log_path.exists():
                for line in service.log_path.read_text(errors="replace").splitlines():
                    if not line.startswith("{"):
                        continue
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if entry.get("level") in ("warning", "error", "critical"):
                        event = str(entry.get("event", "?"))[:80]
                        counted[event] = counted.get(event, 0) + 1
            events[name] = counted
        return events

    def udp_drops(self) -> int:
        """Datagrams the kernel dropped on the gateway's bus sockets (receive buffer full), since they opened."""
        ports = {f"{port:04X}" for port in self.ports.values()}
        drops = 0
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[1].rpartition(":")[2] in ports:
                drops += int(parts[-1])
        return drops

    def count(self) -> dict[str, SeqCount]:
        assert self.query is not None
        return self.query.seq_counts()

    def close(self) -> None:
        self._watching.set()
        for load in self._loads:
            load.stop()
        for service in self.services.values():
            service.close()
        if self.query is not None:
            self.query.close()


def _read_times(path: Path) -> array.array[float]:
    times: array.array[float] = array.array("d")
    with open(path, "rb") as file:
        times.frombytes(file.read())
    return times


def _stage_metrics(name: str, metrics: dict[str, float]) -> dict[str, float]:
    """The few counters each stage's throughput is read from."""
    if name == "can-gateway":
        return {
            "frames": metric_sum(metrics, "telestack_can_gateway_frames_total"),
            "lines": metric_sum(metrics, "telestack_can_gateway_lines_total"),
            "spool_depth": metric_sum(metrics, "telestack_can_gateway_spool_depth_records"),
        }
    if name == "mqtt-bridge":
        return {
            "messages": metric_sum(metrics, "telestack_mqtt_bridge_messages_received_total"),
            "points": metric_sum(metrics, "telestack_mqtt_bridge_points_total"),
        }
    if name == "influx-writer":
        return {
            "lines": metric_sum(metrics, "telestack_influx_writer_lines_written_total"),
            "records": metric_sum(metrics, "telestack_influx_writer_records_consumed_total"),
            "dlq": metric_sum(metrics, "telestack_influx_writer_dlq_records_total"),
        }
    return {}

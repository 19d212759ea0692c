"""The three infrastructure servers together: install, start, provision, describe, stop.

A run directory holds each server's data and log, ``endpoints.json`` (addresses and generated credentials,
mode 0600) and ``pids.json`` (so ``telestack native down`` in another process can stop them). Credentials are
generated once per run directory and reused, so data and logins survive ``down``/``up``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from telestack.core.files import write_atomically
from telestack.core.mqtt import device_password
from telestack.native.endpoints import Endpoints, InfluxEndpoint, KafkaEndpoint, MqttEndpoint
from telestack.native.servers import (
    InfluxServer,
    KafkaServer,
    MosquittoServer,
    NativeServer,
    report,
    run_script,
    stop_process_group,
)

__all__ = ["NativeStack", "default_run_dir", "processes_of", "shared_or_own_servers", "stop_run_dir"]

SHARED_ENDPOINTS_ENV = "TELESTACK_TEST_ENDPOINTS"

ORG = "telestack"
BUCKET = "telemetry"
MQTT_USER = "telestack"
# Device logins of the native broker: the demo's simulated devices (docker-compose.yml's simulate-* and the
# mosquitto service's MQTT_SIMULATED_DEVICES), each with a password derived from endpoints.mqtt.device_secret.
SIMULATED_DEVICES = ("f1", "f2", "f3", "compteur-1", "plug-1")
INFLUX_USER = "telestack-admin"
# Tools the tests and benchmarks run beside the servers, built once into the cache (`telestack native install`).
TOOL_SCRIPTS = ("install-telegraf.sh", "install-lineproto-oracle.sh", "install-chromium.sh")


def default_run_dir() -> Path:
    return Path(os.environ.get("TELESTACK_NATIVE_DIR", ".native")).resolve()


class NativeStack:
    """Kafka, Mosquitto and InfluxDB as local processes under `run_dir`."""

    def __init__(self, run_dir: Path, *, ports: dict[str, int] | None = None) -> None:
        ports = ports or {}
        self.run_dir = run_dir
        self.kafka = KafkaServer(run_dir / "kafka", ports.get("kafka"), ports.get("kafka_controller"))
        self.mosquitto = MosquittoServer(run_dir / "mosquitto", ports.get("mqtt"), ports.get("mqtt_devices"))
        self.influx = InfluxServer(run_dir / "influxdb", ports.get("influx"))
        self.endpoints: Endpoints | None = None

    @property
    def servers(self) -> tuple[NativeServer, ...]:
        return (self.kafka, self.mosquitto, self.influx)

    @property
    def endpoints_path(self) -> Path:
        return self.run_dir / "endpoints.json"

    @property
    def pids_path(self) -> Path:
        return self.run_dir / "pids.json"

    def install(self, tools: bool = False) -> None:
        """Install the servers; with `tools`, also the tools the tests and benchmarks use (Telegraf, Chromium)."""
        started = time.monotonic()
        for server in self.servers:
            report(f"installing {server.name} (cached under $TELESTACK_CACHE after the first time)")
            server.install()
        report(f"servers installed in {time.monotonic() - started:.1f} s")
        if tools:
            for script in TOOL_SCRIPTS:
                started = time.monotonic()
                path = run_script(script)
                report(f"{script}: {path} ready in {time.monotonic() - started:.1f} s")

    def _credentials(self) -> tuple[str, str, str, str]:
        """(mqtt password, devices' secret, influx password, influx token): reused from a previous run."""
        if self.endpoints_path.exists():
            previous = Endpoints.load(self.endpoints_path)
            device_secret = previous.mqtt.device_secret or secrets.token_urlsafe(18)
            return previous.mqtt.password, device_secret, previous.influx.password, previous.influx.token
        fresh = secrets.token_urlsafe
        return fresh(18), fresh(18), fresh(18), fresh(48)

    def start(self) -> Endpoints:
        """Install if needed, start the three servers in parallel, provision them; returns their endpoints."""
        if self.kafka.libs is None or self.mosquitto.binary is None or self.influx.binary is None:
            self.install()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        mqtt_password, device_secret, influx_password, influx_token = self._credentials()
        self.mosquitto.add_user(MQTT_USER, mqtt_password)
        for device in SIMULATED_DEVICES:
            self.mosquitto.add_user(device, device_password(device_secret, device))
        started = time.monotonic()
        for server in self.servers:
            server.start()
        self.save_pids()
        try:
            with ThreadPoolExecutor(len(self.servers)) as pool:
                for future in [pool.submit(server.wait_ready) for server in self.servers]:
                    future.result()
            self.influx.setup(
                username=INFLUX_USER, password=influx_password, org=ORG, bucket=BUCKET, token=influx_token
            )
        except BaseException:
            self.stop()
            raise
        self.endpoints = Endpoints(
            kafka=KafkaEndpoint(f"127.0.0.1:{self.kafka.port}", self.kafka.version()),
            mqtt=MqttEndpoint(
                "127.0.0.1",
                self.mosquitto.port,
                MQTT_USER,
                mqtt_password,
                self.mosquitto.version(),
                device_port=self.mosquitto.device_port,
                device_secret=device_secret,
            ),
            influx=InfluxEndpoint(
                url=self.influx.url,
                org=ORG,
                bucket=BUCKET,
                token=influx_token,
                username=INFLUX_USER,
                password=influx_password,
                version=self.influx.version(),
            ),
        )
        self.endpoints.save(self.endpoints_path)
        report(f"servers ready in {time.monotonic() - started:.1f} s: {self.endpoints.versions()}")
        return self.endpoints

    def save_pids(self) -> None:
        """Write ``pids.json`` (again after a server was restarted), for ``down`` from another process."""
        write_atomically(  # `demo status` and `down` in another process may read it at any moment
            self.pids_path, json.dumps({s.name: s.process.pid for s in self.servers if s.process is not None}) + "\n"
        )

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.pids_path.unlink(missing_ok=True)

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def stop_run_dir(run_dir: Path) -> list[str]:
    """Stop the servers a previous ``up`` started in `run_dir` (from another process); returns what it stopped.

    From ``pids.json``, and then from the process table: a server whose pid file is gone (deleted, or written
    before the server was restarted) is found by its command line, which names its data directory in
    `run_dir`.
    """
    pids_path = run_dir / "pids.json"
    stopped: list[str] = []
    if pids_path.exists():
        pids: dict[str, int] = json.loads(pids_path.read_text())
        for name, pid in pids.items():
            if _mentions(pid, run_dir):
                report(f"stopping {name} (pid {pid})")
                stop_process_group(pid)
                stopped.append(name)
        pids_path.unlink()
    for pid in processes_of(run_dir):
        report(f"stopping pid {pid}, left running from {run_dir}")
        stop_process_group(pid)
        stopped.append(f"pid {pid}")
    return stopped


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _mentions(pid: int, run_dir: Path) -> bool:
    """Guards against a recycled pid: the process must still name a path inside `run_dir`."""
    return (str(run_dir.resolve()) + "/").encode() in _cmdline(pid)


def processes_of(run_dir: Path) -> list[int]:
    """Process-group leaders (each server runs in its own session) whose command line names a path in `run_dir`;
    never this process's own group."""
    own = {os.getpid(), os.getpgid(0)}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if pid in own or os.getpgid(pid) != pid:
                continue
        except OSError:
            continue
        if _mentions(pid, run_dir):
            found.append(pid)
    return sorted(found)


@contextlib.contextmanager
def shared_or_own_servers(prefix: str = "telestack-") -> Iterator[Endpoints]:
    """The running servers named by ``$TELESTACK_TEST_ENDPOINTS`` (an endpoints.json), else our own in a temp dir.

    Benchmarks and tests use it so that one set of servers can serve many runs, or each run starts clean.
    """
    shared = os.environ.get(SHARED_ENDPOINTS_ENV)
    if shared:
        yield Endpoints.load(Path(shared))
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, NativeStack(Path(tmp)) as endpoints:
        yield endpoints

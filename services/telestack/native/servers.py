"""Real Kafka, Mosquitto and InfluxDB as local processes: installed by scripts, started on 127.0.0.1.

Each server is installed once into the cache (``$TELESTACK_CACHE``, default ``~/.cache/telestack``) by its
``scripts/install-*.sh``, then started with a config written into its own data directory, on the port given.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from telestack.core.errors import ServerError

__all__ = [
    "SCRIPTS_DIR",
    "InfluxServer",
    "KafkaServer",
    "MosquittoServer",
    "NativeServer",
    "cache_dir",
    "free_port",
    "free_udp_port",
    "report",
]

SCRIPTS_DIR = Path(__file__).parent / "scripts"


def report(message: str) -> None:
    """Progress for people: one line on stderr."""
    sys.stderr.write(f"[telestack native] {message}\n")
    sys.stderr.flush()


def cache_dir() -> Path:
    return Path(os.environ.get("TELESTACK_CACHE", Path.home() / ".cache" / "telestack"))


# Ports handed out by `free_port` on this machine, for a while: the kernel gives a port back to the next bind(0) as soon
# as the probing socket closes, and a process that binds it seconds later (a service starting under load) can find
# it taken by another process that asked meanwhile (another xdist worker, the compose check, a second run): in a
# fault test beside a CI run, a writer died on "Address already in use" while the other run's bridge answered its
# health checks. A marker file per port, claimed under a lock, keeps telestack processes from handing out the same
# port twice within PORT_CLAIM_S.
PORT_CLAIMS = Path(os.environ.get("TMPDIR", "/tmp")) / f"telestack-ports-{os.getuid()}"
PORT_CLAIM_S = 900.0


def _claim(port: int, kind: str) -> bool:
    PORT_CLAIMS.mkdir(exist_ok=True)
    with open(PORT_CLAIMS / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        marker = PORT_CLAIMS / f"{kind}-{port}"
        try:
            if time.time() - marker.stat().st_mtime < PORT_CLAIM_S:
                return False
        except FileNotFoundError:
            pass
        marker.touch()
        return True


def _unclaimed_port(kind: socket.SocketKind, host: str) -> int:
    name = "tcp" if kind == socket.SOCK_STREAM else "udp"
    for _ in range(1000):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if _claim(port, name):
            return port
    raise OSError(f"no {name} port left unclaimed: clear {PORT_CLAIMS}")


def free_port() -> int:
    """A TCP port nobody listens on, and that no other telestack process on this machine was given lately."""
    return _unclaimed_port(socket.SOCK_STREAM, "127.0.0.1")


def free_udp_port() -> int:
    """A UDP port nobody listens on, for a udp_multicast bus (a socket bound to a port gets every joined group's
    datagrams to it, so buses side by side need ports of their own); unclaimed, as `free_port`."""
    return _unclaimed_port(socket.SOCK_DGRAM, "0.0.0.0")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run_script(name: str, env: dict[str, str] | None = None) -> str:
    """Run an install script (its progress goes to stderr); return the last line of its stdout."""
    script = SCRIPTS_DIR / name
    proc = subprocess.run(
        ["bash", str(script)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if proc.returncode != 0:
        raise ServerError(f"{name} failed with exit status {proc.returncode}; its messages are above")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise ServerError(f"{name} printed nothing; expected an install path")
    return lines[-1]


class NativeServer:
    """A server process with its own data dir and log file; subclasses say how to install and start it."""

    name = "server"

    def __init__(self, datadir: Path, port: int | None = None) -> None:
        self.datadir = datadir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = datadir / f"{self.name}.log"

    # --- to override ---
    def install(self) -> None:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files and format storage before the first start."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return _port_open(self.port)

    def version(self) -> str:
        raise NotImplementedError

    # --- shared ---
    def start(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.datadir,
                start_new_session=True,  # its own process group: a Ctrl-C in the terminal is ours to handle
            )

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with status {self.process.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if self.ready():
                    return
            except (OSError, httpx.HTTPError):
                pass
            time.sleep(0.2)
        raise ServerError(
            f"{self.name} not ready on port {self.port} after {timeout_s:.0f} s; "
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`."""
        if self.process is None or self.process.poll() is not None:
            return
        process = self.process
        # poll() reaps the exited child: without it, its zombie keeps the group "alive" until the timeout.
        stop_process_group(process.pid, timeout_s, alive=lambda: process.poll() is None)
        process.wait()

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def stop_process_group(pid: int, timeout_s: float = 20, alive: Callable[[], bool] | None = None) -> None:
    def is_alive() -> bool:
        if alive is not None:
            return alive()
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return False
        return True

    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive():
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


class KafkaServer(NativeServer):
    """Apache Kafka 4, KRaft, one node acting as broker and controller."""

    name = "kafka"

    def __init__(self, datadir: Path, port: int | None = None, controller_port: int | None = None) -> None:
        super().__init__(datadir, port)
        self.controller_port = controller_port or free_port()
        self.libs: Path | None = None

    def install(self) -> None:
        self.libs = Path(run_script("install-kafka.sh"))

    def _java(self, *args: str, heap: str = "-Xmx256m") -> list[str]:
        if self.libs is None:
            self.install()
        assert self.libs is not None
        # Class-data archive built by install-kafka.sh: the broker starts in ~1 s instead of ~3 s.
        archive = self.libs.parent / "kafka.jsa"
        return [
            "java",
            "-Xms64m",
            heap,
            "-XX:+UseSerialGC",
            *([f"-XX:SharedArchiveFile={archive}", "-Xshare:auto"] if archive.exists() else []),
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={SCRIPTS_DIR / 'kafka' / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.datadir}",
            "-cp",
            f"{self.libs}/*",
            *args,
        ]

    def prepare(self) -> None:
        properties = self.datadir / "server.properties"
        logs = self.datadir / "data"
        properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={logs}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "log.flush.interval.messages=9223372036854775807",
                    "",
                ]
            )
        )
        if not (logs / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            proc = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    # one argument: a random id may start with "-", which would then be read as a flag
                    f"--cluster-id={cluster_id}",
                    "-c",
                    str(properties),
                    "--standalone",
                ),
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise ServerError(f"formatting Kafka storage failed:\n{proc.stdout}{proc.stderr}")

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.datadir / "server.properties"), heap="-Xmx1g")

    def ready(self) -> bool:
        if not _port_open(self.port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{self.port}"})
        metadata = admin.list_topics(timeout=2)
        return bool(metadata.brokers)

    def version(self) -> str:
        assert self.libs is not None
        jars = sorted(self.libs.glob("kafka_2.13-*.jar"))
        return jars[0].stem.removeprefix("kafka_2.13-") if jars else "unknown"


class MosquittoServer(NativeServer):
    """Mosquitto 2 with authentication on and persistence in its data dir, on two listeners as in compose.

    `port` is the services' listener (each picks its client id: replicas keep their own sessions); `device_port`
    is the devices' one, where the client id is forced to the login (``use_username_as_clientid``), so a device
    can take neither a service's session nor another device's.
    """

    name = "mosquitto"

    def __init__(self, datadir: Path, port: int | None = None, device_port: int | None = None) -> None:
        super().__init__(datadir, port)
        self.device_port = device_port or free_port()
        self.binary: str | None = None
        self.users: dict[str, str] = {}

    def install(self) -> None:
        self.binary = run_script("install-mosquitto.sh")

    def add_user(self, username: str, password: str) -> None:
        self.users[username] = password

    def prepare(self) -> None:
        passwd = self.datadir / "passwd"
        passwd.write_text("")
        passwd.chmod(0o600)
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        for username, password in self.users.items():
            subprocess.run([tool, "-b", str(passwd), username, password], check=True, capture_output=True)
        (self.datadir / "mosquitto.conf").write_text(
            "\n".join(
                [
                    "# written by telestack native; see mosquitto/mosquitto.conf for the compose version",
                    "user root" if os.geteuid() == 0 else "",
                    "per_listener_settings false",
                    "allow_anonymous false",
                    f"password_file {passwd}",
                    f"listener {self.port} 127.0.0.1",
                    f"listener {self.device_port} 127.0.0.1",
                    "use_username_as_clientid true",
                    "persistence true",
                    f"persistence_location {self.datadir}/",
                    "autosave_interval 10",
                    "max_queued_messages 1000000",  # as mosquitto/mosquitto.conf: ~30 min of Kafka outage
                    "max_queued_bytes 536870912",
                    "max_inflight_messages 100",
                    "set_tcp_nodelay true",  # without it an MQTT request/reply waits ~40 ms on Nagle
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "",
                ]
            )
        )

    def command(self) -> list[str]:
        assert self.binary is not None
        return [self.binary, "-c", str(self.datadir / "mosquitto.conf")]

    def version(self) -> str:
        assert self.binary is not None
        out = subprocess.run([self.binary, "-h"], capture_output=True, text=True, check=False).stdout
        return out.splitlines()[0].strip() if out else "mosquitto (unknown version)"


class InfluxServer(NativeServer):
    """InfluxDB 2.7 built from its Go module, with the Flux engine."""

    name = "influxdb"

    def __init__(self, datadir: Path, port: int | None = None) -> None:
        super().__init__(datadir, port)
        self.binary: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def install(self) -> None:
        self.binary = run_script("install-influxdb.sh")

    def command(self) -> list[str]:
        assert self.binary is not None
        return [
            self.binary,
            f"--bolt-path={self.datadir / 'influxd.bolt'}",
            f"--engine-path={self.datadir / 'engine'}",
            f"--sqlite-path={self.datadir / 'influxd.sqlite'}",
            f"--http-bind-address=127.0.0.1:{self.port}",
            "--reporting-disabled",
            "--log-level=warn",
        ]

    def ready(self) -> bool:
        if not _port_open(self.port):
            return False
        return httpx.get(f"{self.url}/health", timeout=2).status_code == 200

    def version(self) -> str:
        assert self.binary is not None
        out = subprocess.run([self.binary, "version"], capture_output=True, text=True, check=False).stdout
        return out.strip() or "unknown"

    def setup(self, *, username: str, password: str, org: str, bucket: str, token: str) -> None:
        """First-run setup (POST /api/v2/setup); a no-op when already set up with these credentials."""
        allowed = httpx.get(f"{self.url}/api/v2/setup", timeout=10).json().get("allowed", False)
        if not allowed:
            return
        response = httpx.post(
            f"{self.url}/api/v2/setup",
            json={"username": username, "password": password, "org": org, "bucket": bucket, "token": token},
            timeout=30,
        )
        if response.status_code >= 300:
            raise ServerError(f"InfluxDB setup failed: {response.status_code} {response.text}")

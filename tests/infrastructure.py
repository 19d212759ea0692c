"""Where the test servers come from: native processes or testcontainers, behind one `Endpoints` interface.

``TELESTACK_TEST_BACKEND``:
- ``native``: real Kafka, Mosquitto and InfluxDB as local processes (`telestack.native`), on free ports with
  throw-away data directories; or, when ``TELESTACK_TEST_ENDPOINTS`` names an ``endpoints.json`` written by
  ``make services-up``, those already running servers.
- ``docker``: the same servers in containers, through testcontainers.
- ``auto`` (default): docker when a Docker engine answers, native otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from telestack.core.kafka import KafkaProducer, ensure_topics
from telestack.core.mqtt import device_password
from telestack.core.settings import KafkaSettings
from telestack.native import Endpoints, InfluxEndpoint, KafkaEndpoint, MqttEndpoint, NativeStack
from telestack.native.images import LOCAL_IMAGES
from telestack.native.servers import free_port
from telestack.native.stack import SIMULATED_DEVICES
from tests import leftovers

ROOT = Path(__file__).resolve().parents[1]


def _images() -> dict[str, str]:
    """The images of the docker backend: `.env.example`'s official tags, or with ``TELESTACK_TEST_IMAGES=local``
    the stand-ins of `make images-local` (built from the native servers' artifacts: the same versions)."""
    if os.environ.get("TELESTACK_TEST_IMAGES", "official") == "local":
        return dict(LOCAL_IMAGES)
    return dict(re.findall(r"^(\w+_IMAGE)=(\S+)$", (ROOT / ".env.example").read_text(), re.M))


IMAGES = _images()
KAFKA_IMAGE = IMAGES["KAFKA_IMAGE"]
MOSQUITTO_IMAGE = IMAGES["MOSQUITTO_IMAGE"]
INFLUXDB_IMAGE = IMAGES["INFLUXDB_IMAGE"]


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def choose_backend() -> str:
    backend = os.environ.get("TELESTACK_TEST_BACKEND", "auto")
    if backend not in ("auto", "docker", "native"):
        raise ValueError(f"TELESTACK_TEST_BACKEND must be auto, docker or native, not {backend!r}")
    if backend == "auto":
        return "docker" if docker_available() else "native"
    return backend


@contextlib.contextmanager
def native_servers(run_dir: Path) -> Iterator[tuple[Endpoints, NativeStack | None]]:
    shared = os.environ.get("TELESTACK_TEST_ENDPOINTS")
    if shared:
        yield Endpoints.load(Path(shared)), None
        return
    stack = NativeStack(run_dir)
    with stack as endpoints:
        yield endpoints, stack


@contextlib.contextmanager
def docker_servers() -> Iterator[tuple[Endpoints, None]]:
    if KAFKA_IMAGE.startswith("telestack-local/"):
        # Ryuk (testcontainers' reaper) is an image from a registry too; the containers are removed on exit below.
        os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    from testcontainers.core.container import DockerContainer

    mqtt_password = secrets.token_urlsafe(12)
    device_secret = secrets.token_urlsafe(12)
    # As the native broker: services on 1883 here, devices on 1884 (client id = login), the demo's device users.
    device_users = "".join(
        f"mosquitto_passwd -b /tmp/passwd {device} {device_password(device_secret, device)} && "
        for device in SIMULATED_DEVICES
    )
    mosquitto = (
        DockerContainer(MOSQUITTO_IMAGE)
        .with_exposed_ports(1883, 1884)
        .with_command(
            [
                "sh",
                "-c",
                "touch /tmp/passwd && chmod 0700 /tmp/passwd && "
                f"mosquitto_passwd -b /tmp/passwd telestack {mqtt_password} && {device_users}"
                "chown mosquitto /tmp/passwd && "
                "printf 'allow_anonymous false\\npassword_file /tmp/passwd\\npersistence true\\n"
                "persistence_location /tmp/\\nlistener 1883\\nlistener 1884\\nuse_username_as_clientid true\\n"
                # as the native broker and compose: an offline persistent session keeps this many QoS 1 messages
                "max_queued_messages 1000000\\nmax_queued_bytes 536870912\\nmax_inflight_messages 100\\n'"
                " > /tmp/m.conf && exec mosquitto -c /tmp/m.conf",
            ]
        )
    )
    token = secrets.token_urlsafe(32)
    influx_password = secrets.token_urlsafe(12)
    influx = (
        DockerContainer(INFLUXDB_IMAGE)
        .with_exposed_ports(8086)
        .with_env("DOCKER_INFLUXDB_INIT_MODE", "setup")
        .with_env("DOCKER_INFLUXDB_INIT_USERNAME", "telestack-admin")
        .with_env("DOCKER_INFLUXDB_INIT_PASSWORD", influx_password)
        .with_env("DOCKER_INFLUXDB_INIT_ORG", "telestack")
        .with_env("DOCKER_INFLUXDB_INIT_BUCKET", "telemetry")
        .with_env("DOCKER_INFLUXDB_INIT_ADMIN_TOKEN", token)
    )
    with contextlib.ExitStack() as running:
        for container in (mosquitto, influx):
            running.enter_context(_started(container))
        kafka_port = running.enter_context(_kafka_started())
        _wait_for_log(mosquitto, "running", timeout_s=60)
        influx_url = _wait_for_influx(influx)
        yield (
            Endpoints(
                kafka=KafkaEndpoint(f"127.0.0.1:{kafka_port}", KAFKA_IMAGE.split(":")[1]),
                mqtt=MqttEndpoint(
                    mosquitto.get_container_host_ip(),
                    int(mosquitto.get_exposed_port(1883)),
                    "telestack",
                    mqtt_password,
                    MOSQUITTO_IMAGE,
                    device_port=int(mosquitto.get_exposed_port(1884)),
                    device_secret=device_secret,
                ),
                influx=InfluxEndpoint(
                    url=influx_url,
                    org="telestack",
                    bucket="telemetry",
                    token=token,
                    username="telestack-admin",
                    password=influx_password,
                    version=INFLUXDB_IMAGE.split(":")[1],
                ),
            ),
            None,
        )


# A lone KRaft node on a loaded machine can stay stuck in its own start: a CI run's (2026-12-07) logged
# "ControllerRegistrationManager ... channel manager timed out before sending the request" 15 s after it began,
# then nothing for 180 s, while the other workers' brokers started and nine of the same containers started at once
# beside three busy cores took 52-73 s. A stuck one is replaced by a new one, its log printed, at most this often.
KAFKA_START_ATTEMPTS = 3
KAFKA_START_TIMEOUT_S = 120  # starts seen under load: 52-73 s; with a second attempt, within the 300 s test timeout


def _kafka_container(port: int) -> Any:
    from testcontainers.core.container import DockerContainer

    return (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_env("CLUSTER_ID", "tLsk4V9uQ3C6yKZ1mJ0n2A")
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        # Clients get the host-mapped port; the broker talks to itself (transaction markers, for one) on a
        # listener of its own: 127.0.0.1:<host port> does not exist inside the container.
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093,BROKER://:9094")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port},BROKER://localhost:9094")
        .with_env("KAFKA_INTER_BROKER_LISTENER_NAME", "BROKER")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,BROKER:PLAINTEXT")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )


@contextlib.contextmanager
def _kafka_started() -> Iterator[int]:
    """A Kafka container that has started (its host port); a stuck one is replaced (see KAFKA_START_ATTEMPTS)."""
    for attempt in range(1, KAFKA_START_ATTEMPTS + 1):
        port = free_port()
        with _started(_kafka_container(port)) as kafka:
            try:
                _wait_for_log(kafka, "Kafka Server started", timeout_s=KAFKA_START_TIMEOUT_S)
            except RuntimeError as stuck:
                if attempt == KAFKA_START_ATTEMPTS:
                    raise
                print(
                    f"[test servers] {stuck}\n[test servers] a new Kafka container, attempt {attempt + 1} of "
                    f"{KAFKA_START_ATTEMPTS}",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            yield port
            return


def warm_kafka(bootstrap_servers: str, timeout_s: float = 60) -> None:
    """Have a fresh broker hand out its first idempotent producer id before the first test needs one.

    On a fresh broker the first idempotent producer waits for its producer id ("Coordinator load in progress"). On a
    loaded machine that took longer than a command's 5 s wait: in ci45 two actuator tests on a worker whose servers
    had just started saw their first commands time out. (A group commit here as well was tried and dropped: in
    ci46 it met NOT_COORDINATOR until the test's own timeout, on a broker that had been slow to start.)
    """
    settings = KafkaSettings(bootstrap_servers=bootstrap_servers)
    topic = "telestack-warm-up"
    ensure_topics(settings, {topic: 1})
    producer = KafkaProducer(settings)
    try:
        producer.produce(topic, b"warm-up")
        if producer.flush(timeout_s):
            raise RuntimeError(f"Kafka at {bootstrap_servers} did not confirm a record within {timeout_s} s")
    finally:
        producer.close(0)


def _wait_for_influx(container: Any, timeout_s: float = 120) -> str:
    """Its URL, once /health passes on the published port (the images set up on a private port before that).

    The port is asked only while the container runs: testcontainers' own wait for that state ends in a bare
    "container did not become running", and the container's log, the one thing that says why, was lost (ci33).
    """
    started = time.monotonic()
    deadline = started + timeout_s
    url = None
    wrapped = container.get_wrapped_container()
    while time.monotonic() < deadline:
        wrapped.reload()
        if wrapped.status == "exited":
            break
        if wrapped.status == "running" and url is None:
            with contextlib.suppress(TimeoutError):  # it stopped since: the next reload says so
                url = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(8086)}"
        if url is not None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return url
        time.sleep(0.2)
    state = wrapped.attrs.get("State", {})
    stdout, stderr = container.get_logs()
    raise RuntimeError(
        f"InfluxDB container not ready after {time.monotonic() - started:.0f} s of {timeout_s} (status "
        f"{state.get('Status')}, exit code "
        f"{state.get('ExitCode')}, {url or 'no port published'}); its log:\n"
        f"{(stdout + stderr).decode(errors='replace')[-4000:]}"
    )


@contextlib.contextmanager
def _started(container: Any) -> Iterator[Any]:
    """Start a container; if it does not come up, say why with its log (then remove it)."""
    container.with_env(leftovers.OWNER_VAR, leftovers.mark_owner())  # the next run removes it if this one dies
    try:
        container.start()
    except Exception as exc:
        wrapped = container.get_wrapped_container()
        logs = wrapped.logs(tail=60).decode(errors="replace") if wrapped is not None else "(not created)"
        with contextlib.suppress(Exception):
            container.stop()
        raise RuntimeError(f"container {container.image} did not start: {exc}; its log:\n{logs}") from exc
    try:
        yield container
    finally:
        container.stop()


def _wait_for_log(container: Any, text: str, timeout_s: float) -> None:
    """Wait for `text` in the container's log, bounded, and fail with the log if the container exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stdout, stderr = container.get_logs()
        if text.encode() in stdout or text.encode() in stderr:
            return
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status == "exited":
            break
        time.sleep(0.2)
    stdout, stderr = container.get_logs()
    raise RuntimeError(
        f"{container.image}: no {text!r} in its log within {timeout_s} s; its log:\n"
        f"{(stdout + stderr).decode(errors='replace')[-4000:]}"
    )

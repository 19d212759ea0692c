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
import secrets
from collections.abc import Iterator
from pathlib import Path

from telestack.core.mqtt import device_password
from telestack.native import Endpoints, InfluxEndpoint, KafkaEndpoint, MqttEndpoint, NativeStack
from telestack.native.servers import free_port
from telestack.native.stack import SIMULATED_DEVICES

# Pinned to the versions the native servers run, so both backends test the same thing.
KAFKA_IMAGE = "apache/kafka:4.1.1"
MOSQUITTO_IMAGE = "eclipse-mosquitto:2.0.22"
INFLUXDB_IMAGE = "influxdb:2.7.12"


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
    from testcontainers.community.influxdb.version2 import InfluxDb2Container
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    kafka_port = free_port()
    kafka = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, kafka_port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{kafka_port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )
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
                "printf 'allow_anonymous false\\npassword_file /tmp/passwd\\npersistence true\\n"
                "persistence_location /tmp/\\nlistener 1883\\nlistener 1884\\nuse_username_as_clientid true\\n'"
                " > /tmp/m.conf && exec mosquitto -c /tmp/m.conf -v",
            ]
        )
    )
    token = secrets.token_urlsafe(32)
    influx_password = secrets.token_urlsafe(12)
    influx = InfluxDb2Container(
        INFLUXDB_IMAGE,
        init_mode="setup",
        username="telestack-admin",
        password=influx_password,
        org_name="telestack",
        bucket="telemetry",
        admin_token=token,
    )
    with kafka, mosquitto, influx:
        wait_for_logs(kafka, "Kafka Server started", timeout=120)
        wait_for_logs(mosquitto, "running", timeout=60)
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
                    url=influx.get_url(),
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

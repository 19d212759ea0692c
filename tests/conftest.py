"""Session-wide real servers (Kafka, Mosquitto, InfluxDB) and per-test helpers built on them.

Tests ask for `kafka`, `mqtt` or `influx` (endpoints) and get real servers: see `tests/infrastructure.py`
for where they come from. One set of servers serves the whole session; tests isolate themselves with
fresh topics (`topic`), buckets (`bucket`) and MQTT topic prefixes (`mqtt_prefix`).
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt_client
import pytest
from influxdb_client import InfluxDBClient
from paho.mqtt.enums import CallbackAPIVersion

from telestack.core.kafka import ensure_topics
from telestack.core.settings import InfluxSettings, KafkaSettings, MqttSettings
from telestack.native import Endpoints, InfluxEndpoint, KafkaEndpoint, MqttEndpoint, NativeStack
from telestack.native.servers import KafkaServer
from tests import leftovers
from tests.infrastructure import choose_backend, docker_servers, native_servers, warm_kafka
from tests.unit_tier import UnitTierGuard

# Fixtures that start a server (the session's, or one of the test's own), and tools built by `make setup`:
# a test using one is an integration test, whatever its module.
SERVER_FIXTURES = {
    "endpoints",
    "kafka",
    "mqtt",
    "influx",
    "native_stack",  # the session's servers
    "own_kafka",
    "own_mosquitto",
    "private_influx",
    "chaos_servers",
    "demo_stack",
    "demo",
    "run_dir",
    "telegraf",
}
# Modules whose tests start servers themselves (a whole demo, a broker of their own) or need a built tool.
SERVER_MODULES = (
    "tests/demo/test_command.py",
    "tests/native/test_servers.py",
    "tests/stack/test_mosquitto.py",  # Mosquitto from mosquitto/entrypoint.sh, a broker per module (or per test)
    "tests/stack/test_telegraf.py",
)


# Tests that run a whole stack (a demo, the chaos servers and their services under load). `make test` runs the suite on
# xdist workers (TEST_WORKERS, 3); each group below goes to one worker, one test after the other: at most two whole
# stacks at once on a small machine's cores, the modules sharing a session fixture (the chaos servers, the session's
# demo) on the same worker so that it starts once, while the other worker runs the rest. The two groups take about
# as long (ci25: 338 s and 380 s of test time, of a 515 s suite).
WHOLE_STACK_GROUPS = {
    "whole-stack-chaos": ("tests/chaos/test_faults.py", "tests/chaos/test_kafka_freeze.py"),
    "whole-stack-demo": (
        "tests/chaos/test_demo_downsampling.py",
        "tests/demo/test_command.py",
        "tests/stack/test_dashboards.py",
        "tests/stack/test_telegraf.py",
    ),
}
WHOLE_STACK_MODULES = tuple(module for modules in WHOLE_STACK_GROUPS.values() for module in modules)
# Modules run whole by one worker, after the whole-stack groups: their tests share a costly module fixture or cache
# that each worker would otherwise build again (the opendbc comparison parses 115 DBC files: ~30 CPU-s per worker).
WHOLE_MODULES = ("tests/can_gateway/test_decoder_opendbc.py",)
WHOLE_STACK_FIXTURES = {"chaos_servers", "demo_stack", "demo", "run_dir"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.nodeid.split("::")[0]
        fixtures = set(getattr(item, "fixturenames", ()))
        if SERVER_FIXTURES & fixtures or module in SERVER_MODULES:
            item.add_marker(pytest.mark.integration)
        if WHOLE_STACK_FIXTURES & fixtures and module not in WHOLE_STACK_MODULES:
            raise pytest.UsageError(
                f"{item.nodeid} runs a whole stack ({', '.join(sorted(WHOLE_STACK_FIXTURES & fixtures))}): "
                "add its module to one of WHOLE_STACK_GROUPS in tests/conftest.py"
            )


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """--dist loadgroup: tests spread one by one over the workers, except each of WHOLE_STACK_GROUPS, kept on one.

    (xdist's own loadgroup reads `xdist_group` marks through a private attribute pytest 9.2 no longer has: marks
    are ignored, so the group is chosen here by module, in the scheduler's public hook, overriding the one method
    xdist's own LoadGroupScheduling overrides, and the one that hands a scope to a worker, to hand out the groups
    first.)
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WholeStackScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            group = next((group for group, modules in WHOLE_STACK_GROUPS.items() if module in modules), None)
            return group or (module if module in WHOLE_MODULES else nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            # The whole-stack groups first, one per worker: they are the longest (xdist alone orders by test count).
            for group in reversed(WHOLE_STACK_GROUPS):
                if group in self.workqueue:
                    self.workqueue.move_to_end(group, last=False)
            super()._assign_work_unit(node)

    return WholeStackScheduling(config, log)


_unit_tier: UnitTierGuard | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _unit_tier
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist), once per run
        swept = leftovers.sweep()
        if swept is not None:
            sys.stderr.write(f"[tests] {swept}\n")
    _unit_tier = UnitTierGuard(Path(tempfile.mkdtemp(prefix="telestack-unit-tier-")))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _unit_tier is not None:
        shutil.rmtree(_unit_tier.stand_ins.parent, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    """A test not marked integration starts no server, in its fixtures either (see tests/unit_tier.py)."""
    if _unit_tier is None or item.get_closest_marker("integration") is not None:
        return (yield)
    _unit_tier.start()
    try:
        return (yield)
    finally:
        _unit_tier.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Setup and call are watched, not teardown: a module's or the session's servers may stop after a unit test."""
    if _unit_tier is not None:
        _unit_tier.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report = yield
    if _unit_tier is not None and _unit_tier.active and (started := _unit_tier.take_started()):
        report.outcome = "failed"
        report.longrepr = (
            f"{report.longrepr or ''}\nunit tier: this test, not marked integration, started {', '.join(started)}: "
            "mark it (pytest.mark.integration, or SERVER_FIXTURES / SERVER_MODULES in tests/conftest.py)"
        )
    if report.when == "call":
        item.telestack_call_report = report  # type: ignore[attr-defined]  # read by _no_leaked_clients
    return report


def _client_threads() -> Counter[str]:
    """The Kafka and MQTT clients alive in this process, by kind: one librdkafka handle has one `rdk:main` thread
    (native, so read from /proc), one paho client with its loop running one `paho-mqtt-client-*` thread."""
    clients: Counter[str] = Counter()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                name = comm.read()
        except OSError:
            continue  # the thread ended while we looked
        if name.startswith("rdk:main"):
            clients["Kafka client (librdkafka)"] += 1
    clients["MQTT client loop (paho)"] = sum(t.name.startswith("paho-mqtt-client-") for t in threading.enumerate())
    return +clients


@pytest.fixture(autouse=True)
def _no_leaked_clients(request: pytest.FixtureRequest) -> Iterator[None]:
    """Nothing a test opens outlives it: a producer left behind kept logging connection errors through later tests.

    Checked once the test's other fixtures are torn down and their values released (a client only they referenced
    is closed by its finaliser); clients of wider-scoped fixtures, started before this one, are not counted, and a
    client still closing in another thread gets 5 s to finish.
    """
    before = _client_threads()
    yield
    call = getattr(request.node, "telestack_call_report", None)
    if call is not None and call.failed:
        return  # its traceback still holds the test's objects; the failure is what to read first
    if _client_threads() - before:
        funcargs = getattr(request.node, "funcargs", {})
        for name in [name for name in funcargs if name != "_no_leaked_clients"]:
            del funcargs[name]  # torn down already: what they still reference is garbage unless held elsewhere
        gc.collect()
        deadline = time.monotonic() + 5
        while _client_threads() - before and time.monotonic() < deadline:
            time.sleep(0.05)
    if leaked := _client_threads() - before:
        pytest.fail(f"the test left clients running: {dict(leaked)}; close them (context manager or fixture teardown)")


@pytest.fixture(scope="session")
def _servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Endpoints, NativeStack | None]]:
    backend = choose_backend()
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    started = time.monotonic()
    context = docker_servers() if backend == "docker" else native_servers(tmp_path_factory.mktemp("native"))
    # Shown live, not captured: people should see the servers start and which versions the suite runs against.
    with capture.global_and_fixture_disabled():
        endpoints, stack = context.__enter__()
        try:
            warm_kafka(endpoints.kafka.bootstrap_servers)
        except BaseException:
            context.__exit__(None, None, None)
            raise
        sys.stderr.write(
            f"\ntest servers ({backend}, ready in {time.monotonic() - started:.1f} s): {endpoints.versions()}\n"
        )
    try:
        yield endpoints, stack
    finally:
        context.__exit__(None, None, None)


@pytest.fixture(scope="session")
def endpoints(_servers: tuple[Endpoints, NativeStack | None]) -> Endpoints:
    return _servers[0]


@pytest.fixture(scope="session")
def native_stack(_servers: tuple[Endpoints, NativeStack | None]) -> NativeStack:
    """The native servers themselves, for tests that stop or kill them (fault tests)."""
    if _servers[1] is None:
        pytest.fail("this test needs servers it may restart: run it with TELESTACK_TEST_BACKEND=native")
    return _servers[1]


@pytest.fixture(scope="session")
def kafka(endpoints: Endpoints) -> KafkaEndpoint:
    return endpoints.kafka


@pytest.fixture(scope="session")
def mqtt(endpoints: Endpoints) -> MqttEndpoint:
    return endpoints.mqtt


@pytest.fixture(scope="session")
def influx(endpoints: Endpoints) -> InfluxEndpoint:
    return endpoints.influx


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[KafkaServer]:
    """A native Kafka broker of the test's own (it may kill it, or needs what the shared one may lack)."""
    server = KafkaServer(tmp_path / "kafka")
    server.install()
    server.start()
    server.wait_ready(120)
    yield server
    server.kill()  # a throw-away server: no need to wait for a clean shutdown


@pytest.fixture
def kafka_settings(kafka: KafkaEndpoint) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, linger_ms=5)


@pytest.fixture
def mqtt_settings(mqtt: MqttEndpoint) -> MqttSettings:
    return MqttSettings(
        host=mqtt.host,
        port=mqtt.port,
        username=mqtt.username,
        password=mqtt.password,  # type: ignore[arg-type]
        client_id=f"test-{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture
def unique() -> str:
    """A short unique suffix for names (topics, buckets, groups, client ids)."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def topic(kafka_settings: KafkaSettings, unique: str) -> str:
    """A fresh Kafka topic with 3 partitions."""
    name = f"test-{unique}"
    ensure_topics(kafka_settings, {name: 3})
    return name


@pytest.fixture
def bucket(influx: InfluxEndpoint, unique: str) -> Iterator[str]:
    """A fresh InfluxDB bucket, deleted after the test."""
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        api = client.buckets_api()
        created = api.create_bucket(bucket_name=f"test-{unique}", org=influx.org)
        yield str(created.name)
        api.delete_bucket(created)


@pytest.fixture
def influx_settings(influx: InfluxEndpoint, bucket: str) -> InfluxSettings:
    return InfluxSettings(url=influx.url, org=influx.org, bucket=bucket, token=influx.token)  # type: ignore[arg-type]


@pytest.fixture
def mqtt_prefix(unique: str) -> str:
    """A topic prefix no other test uses."""
    return f"test/{unique}"


@pytest.fixture
def connect_mqtt(mqtt: MqttEndpoint) -> Iterator[Callable[..., mqtt_client.Client]]:
    """Factory: a connected paho client (MQTT 3.1.1) with the loop running; disconnected after the test."""
    clients: list[mqtt_client.Client] = []

    def connect(client_id: str = "", clean_session: bool = True) -> mqtt_client.Client:
        client = mqtt_client.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        client.username_pw_set(mqtt.username, mqtt.password)
        client.connect(mqtt.host, mqtt.port)
        client.loop_start()
        deadline = time.monotonic() + 10
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise TimeoutError(f"MQTT connect to {mqtt.host}:{mqtt.port} timed out")
            time.sleep(0.02)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def data_dir() -> Path:
    return Path(__file__).parent / "data"

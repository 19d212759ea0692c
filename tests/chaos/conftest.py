"""Fault injection: the whole pipeline under sequence-numbered load, on servers of its own.

Size: ``TELESTACK_CHAOS_SIZE=ci`` (default: small load, short outages, 2 broker kills) or ``full``
(``make chaos``: 3 x 1,000 CAN frames/s and 50 devices; issue 13's table: Kafka frozen 6 minutes, InfluxDB down
10 minutes, InfluxDB slow (10-20 s per request) for 5 minutes, a 30-minute demo with the downsampler; 5 broker
kills). Each fault's lag must drain within ``drained_within_s`` (5 minutes) and each process's RSS peak is reported.
Every fault's figures are collected and written at the end of the session to
``benchmarks/results/chaos-<size>-<time>.{json,md}`` and shown in the terminal summary.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from benchmarks.e2e.stack import E2EStack

from telestack.native import Endpoints, NativeStack
from telestack.native.servers import NativeServer

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@dataclass(frozen=True)
class ChaosSize:
    name: str
    can_rate: float  # frames/s per bus
    devices: int
    device_rate: float  # messages/s per device
    warm_s: float  # load before the fault
    tail_s: float  # load after recovery
    kafka_kills: int
    kafka_down_s: float
    unreachable_s: float  # Kafka frozen (SIGSTOP) this long ...
    message_timeout_ms: int  # ... with the producers' message.timeout.ms this short
    influx_down_s: float
    service_down_s: float  # a killed service stays down this long before its restart
    influx_slow_s: float  # InfluxDB answers every request late for this long ...
    influx_delay_s: tuple[float, float]  # ... by a delay drawn in this range, s
    demo_s: float  # the demo (every service, the simulators, the downsampler) runs this long ...
    drained_within_s: float  # after each fault, the writer's lag is 0 and every point visible within this
    downsample_every: str  # ... with the downsampler looking for closed windows this often ...
    downsample_offset: str  # ... and aggregating a window this long after its end


SIZES = {
    # ci: the downsampler's first whole window is aggregated ~80 s after the start (not up to 150 s at the defaults)
    "ci": ChaosSize("ci", 200, 10, 5, 4, 4, 2, 3, 12, 4_000, 15, 2, 15, (1.0, 3.0), 110, 180, "10s", "10s"),
    "full": ChaosSize(
        "full", 1000, 50, 10, 10, 10, 5, 5, 360, 10_000, 600, 5, 300, (10.0, 20.0), 1800, 300, "1m", "30s"
    ),
}


def chaos_size() -> ChaosSize:
    name = os.environ.get("TELESTACK_CHAOS_SIZE", "ci")
    if name not in SIZES:
        raise pytest.UsageError(f"TELESTACK_CHAOS_SIZE={name!r}: use one of {', '.join(SIZES)}")
    return SIZES[name]


REPORTS: list[dict[str, Any]] = []


@pytest.fixture(scope="session")
def size() -> ChaosSize:
    return chaos_size()


@pytest.fixture(scope="session")
def chaos_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Endpoints, NativeStack]]:
    """Kafka, Mosquitto and InfluxDB of the fault tests alone: they get killed, frozen and restarted."""
    native = NativeStack(tmp_path_factory.mktemp("chaos-servers"))
    endpoints = native.start()
    try:
        yield endpoints, native
    finally:
        for server in native.servers:
            _thaw(server)
        native.stop()


def _thaw(server: NativeServer) -> None:
    import signal

    if server.process is not None and server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGCONT)


@pytest.fixture
def servers(chaos_servers: tuple[Endpoints, NativeStack]) -> Iterator[tuple[Endpoints, NativeStack]]:
    """The chaos servers, each one running (a test that failed half-way may have left one stopped)."""
    endpoints, native = chaos_servers
    for server in native.servers:
        _thaw(server)
        if server.process is None or server.process.poll() is not None:
            server.start()
            server.wait_ready()
    yield endpoints, native


@pytest.fixture
def stack_factory(
    servers: tuple[Endpoints, NativeStack], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """Builds an `E2EStack` (own bucket, topics, services) on the chaos servers; closed after the test."""
    endpoints, native = servers
    stacks: list[E2EStack] = []

    def make(service_config: dict[str, Any] | None = None) -> E2EStack:
        words = re.sub(r"[^a-z0-9]+", "-", request.node.name.removeprefix("test_").lower()).strip("-")
        name = f"chaos-{words[:48]}-{uuid.uuid4().hex[:6]}"
        stack = E2EStack(
            tmp_path / f"stack-{len(stacks)}",
            endpoints=endpoints,
            native=native,
            service_config=service_config,
            name=name,
        )
        stacks.append(stack)
        stack.prepare()
        stack.start_services()
        return stack

    yield make
    for stack in stacks:
        stack.close()


def record(report: dict[str, Any]) -> None:
    REPORTS.append(report)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORTS:
        return
    size = chaos_size()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"chaos-{size.name}-{stamp}.json").write_text(json.dumps(REPORTS, indent=2) + "\n")
    lines = [
        f"# telestack fault injection ({size.name} size, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        "| fault | points sent | missing | duplicated | healthy again after (s) | drained after (s) | RSS peak (MB) "
        "| notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for report in REPORTS:
        healthy = ", ".join(f"{k} {v}" for k, v in report.get("healthy_after_s", {}).items())
        rss = ", ".join(f"{k} {v}" for k, v in report.get("rss_peak_mb", {}).items())
        lines.append(
            f"| {report['fault']} | {report['sent']} | {report['missing']} | {report['duplicated']} | {healthy} "
            f"| {report.get('drained_after_s')} | {rss} | {report.get('notes', '')} |"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / f"chaos-{size.name}-{stamp}.md").write_text(text)
    terminalreporter.write_sep("=", "fault injection results")
    terminalreporter.write(text)
    terminalreporter.write(f"(also in {RESULTS}/chaos-{size.name}-{stamp}.{{json,md}})\n")

"""One demo (native servers, every service and simulator, as `make demo` runs them) for the stack tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from telestack.demo.stack import DemoInfo, DemoStack
from tests.polling import wait_until
from tests.stack.flux import run_flux

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    """The demo, started once; free ports only (never the standard ones other runs may hold)."""
    stack = DemoStack(tmp_path_factory.mktemp("demo"), ROOT, scrape_interval_s=3.0, standard_ports=False)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def demo(demo_stack: DemoStack) -> DemoInfo:
    assert demo_stack.info is not None
    return demo_stack.info


@pytest.fixture(scope="session")
def influx_reader(demo: DemoInfo) -> Iterator[httpx.Client]:
    """An HTTP client with the read-only token Grafana uses."""
    with httpx.Client(timeout=120, headers={"Authorization": f"Token {demo.read_token}"}) as client:
        yield client


@pytest.fixture(scope="session")
def filled_demo(demo_stack: DemoStack, demo: DemoInfo, influx_reader: httpx.Client) -> DemoInfo:
    """The demo once InfluxDB holds what every dashboard shows: simulators' data, several metric scrapes,
    consumer lag, a command outcome and the fermenter alert the demo's command makes fire (~30 s)."""
    influx = demo.endpoints.influx

    def has(flux: str) -> bool:
        return bool(run_flux(influx_reader, influx.url, influx.org, flux).rows)

    def metric(field: str) -> str:
        return (
            f'from(bucket: "{influx.bucket}") |> range(start: -10m)'
            f' |> filter(fn: (r) => r._measurement == "prometheus" and r._field == "{field}")'
        )

    started = time.monotonic()
    wait_until(lambda: not demo_stack.missing_data(), timeout_s=60, interval_s=1, what="every simulator's data")
    wait_until(
        lambda: demo_stack.scraper is not None and demo_stack.scraper.scrapes >= 4,
        timeout_s=60,
        interval_s=1,
        what="4 metric scrapes",
    )
    for field in ("telestack_kafka_consumer_lag_records", "telestack_actuator_command_outcomes_total"):
        wait_until(lambda field=field: has(metric(field)), timeout_s=60, interval_s=1, what=field)
    firing = (
        f'from(bucket: "{influx.bucket}") |> range(start: -10m)'
        ' |> filter(fn: (r) => r._measurement == "alerts" and r.state == "firing" and r.rule == "fermenter_setpoint")'
    )
    wait_until(lambda: has(firing), timeout_s=90, interval_s=1, what="the fermenter_setpoint alert firing")
    exited = [f"{p.name}: {p.log_tail()}" for p in demo_stack.exited()]
    assert not exited, f"processes exited during the demo: {exited}"
    demo.timings["filled_s"] = time.monotonic() - started
    return demo

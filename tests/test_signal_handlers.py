"""Commands that own SIGTERM/SIGINT give them back: after their main returns, the handlers are the ones found.

`Shutdown` used as a context manager (or `run_service`) installs its handlers and restores the previous ones;
each command's ``run`` is called here in-process with what would block (MQTT, Kafka, the demo's servers)
replaced by a stub that checks the command's handlers were in place, then returns.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from telestack.cli import main
from telestack.core.runtime import Shutdown
from telestack.demo import command as demo_command
from telestack.demo import tail
from telestack.simulators import mqtt_device

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _empty_config(tmp_path: Path) -> Path:
    path = tmp_path / "telestack.yaml"
    path.write_text("{}\n")
    return path


def _ours(signum: int, frame: FrameType | None) -> None:
    raise AssertionError("the test's own handler was called")


@pytest.fixture
def handlers_kept() -> Iterator[Callable[[], None]]:
    """Installs a handler of the test's own; after the test, checks it is back. Yields a check that, called
    while the command runs, asserts the command's handlers are the ones in place."""
    previous = {signum: signal.signal(signum, _ours) for signum in SIGNALS}
    seen: list[bool] = []

    def during() -> None:
        seen.append(all(signal.getsignal(signum) is not _ours for signum in SIGNALS))

    try:
        yield during
        assert signal.getsignal(signal.SIGTERM) is _ours and signal.getsignal(signal.SIGINT) is _ours
        assert seen == [] or all(seen), "the command did not install its handlers while it ran"
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_shutdown_as_a_context_manager_restores_the_handlers(handlers_kept: Callable[[], None]) -> None:
    with Shutdown() as shutdown:
        handlers_kept()
        signal.raise_signal(signal.SIGTERM)
        assert shutdown.is_set() and shutdown.reason == "SIGTERM"


def test_simulate_vehicle(handlers_kept: Callable[[], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DATABASE": str(ROOT / "config" / "dbc" / "telestack_vehicle.dbc"),
        "SEND": "false",
        "RECORD": str(tmp_path / "sim.log"),
        "REALTIME": "false",
        "DURATION_S": "0.05",
        "START_TIME": "0",
    }.items():
        monkeypatch.setenv(f"TELESTACK_VEHICLE_SIMULATOR__{name}", value)
    assert main(["simulate", "vehicle", "--config", str(_empty_config(tmp_path))]) == 0
    assert (tmp_path / "sim.log").exists()


@pytest.mark.parametrize("kind", ["fermenters", "energy-meter", "smart-plug"])
def test_simulate_mqtt_devices(
    kind: str, handlers_kept: Callable[[], None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran: list[Shutdown] = []

    def run(fleet: Any, shutdown: Shutdown, *, ticks: int | None = None) -> None:
        handlers_kept()
        ran.append(shutdown)

    monkeypatch.setattr(mqtt_device.DeviceFleet, "run", run)
    monkeypatch.setenv("TELESTACK_MQTT__PASSWORD", "a-real-secret")
    assert main(["simulate", kind, "--config", str(_empty_config(tmp_path))]) == 0
    assert len(ran) == 1


def test_tail(handlers_kept: Callable[[], None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ran: list[Shutdown] = []

    def run_consumer(settings: Any, args: argparse.Namespace, shutdown: Shutdown) -> None:
        handlers_kept()
        ran.append(shutdown)

    monkeypatch.setattr(tail, "_run_consumer", run_consumer)
    assert main(["tail", "--config", str(_empty_config(tmp_path))]) == 0
    assert len(ran) == 1


class _FakeStack:
    """The demo's stack, without servers: `start` is answered by a SIGTERM, as `telestack demo down` sends."""

    stopped = False

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def start(self, report: Callable[[str], None]) -> object:
        signal.raise_signal(signal.SIGTERM)
        return object()

    def restart_exited(self) -> list[Any]:
        return []

    def stop(self) -> None:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # a second Ctrl-C does not cut the stop short
        _FakeStack.stopped = True


def test_demo_up(handlers_kept: Callable[[], None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(demo_command, "DemoStack", _FakeStack)
    monkeypatch.setattr(demo_command, "_summary", lambda info, run_dir: "")
    assert demo_command._up(tmp_path) == 0
    assert _FakeStack.stopped

"""`telestack demo up | down | status | check` as people run them (make demo, make demo-down, make demo-check).

Each test runs a whole demo (its own native servers on free ports, every service and simulator) in a run
directory of its own; ports are chosen free, so it never disturbs a demo or test servers already running.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.polling import wait_until, wait_while_progressing

ROOT = Path(__file__).resolve().parents[2]


def _telestack(*args: str) -> list[str]:
    return [sys.executable, "-m", "telestack", *args]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TELESTACK_") or k == "TELESTACK_CACHE"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (our own child, not yet reaped) is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "demo"
    path.mkdir()
    # a previous run's ports are reused first: seed free ones so the demo never takes 9092, 1883, 8080, ...
    from telestack.demo.stack import SERVER_PORTS, SERVICE_PORTS
    from telestack.native.servers import free_port

    ports = {name: free_port() for name in {**SERVER_PORTS, **SERVICE_PORTS}}
    (path / "demo.json").write_text(json.dumps({"ports": ports}))
    return path


class Demo:
    """`telestack demo up` in the background, its output collected by a thread."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.proc = subprocess.Popen(
            _telestack("demo", "up", "--run-dir", str(run_dir)),
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_running(self) -> None:
        def running() -> bool:
            assert self.proc.poll() is None, f"demo up exited with {self.proc.returncode}:\n{self.text}"
            return "telestack demo is running" in self.text

        # `demo up` prints each step as it goes: it may take long on a loaded machine while it keeps going.
        wait_while_progressing(running, lambda: len(self.output), stall_s=90, limit_s=240, what="demo up")

    def down(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _telestack("demo", "down", "--run-dir", str(self.run_dir)),
            env=_env(),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=150,
        )


@pytest.fixture
def demo(run_dir: Path) -> Iterator[Demo]:
    started = Demo(run_dir)
    try:
        started.wait_running()
        yield started
    finally:
        if started.proc.poll() is None or (run_dir / "pids.json").exists():
            started.down()  # whatever the test did, leave nothing running
        started.proc.wait(30)


def _pids(run_dir: Path) -> list[int]:
    state = json.loads((run_dir / "demo.json").read_text())
    servers = json.loads((run_dir / "pids.json").read_text()).values() if (run_dir / "pids.json").exists() else []
    return [*state["processes"].values(), *servers]


def test_up_then_down_from_another_terminal(demo: Demo) -> None:
    for where in ("Kafka", "MQTT", "InfluxDB", "actuator", "/ui", "telestack tail --run-dir"):
        assert where in demo.text, where
    status = subprocess.run(
        _telestack("demo", "status", "--run-dir", str(demo.run_dir)),
        env=_env(),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert status.returncode == 0 and "EXITED" not in status.stdout, status.stdout
    pids = _pids(demo.run_dir)
    assert len(pids) == 14  # 7 services (the downsampler among them), 4 simulators, 3 servers
    _the_printed_environment_makes_tokens_the_actuator_knows(demo)
    down = demo.down()
    assert down.returncode == 0, down.stderr
    assert demo.proc.wait(30) == 0
    assert not [pid for pid in pids if _alive(pid)]
    assert json.loads((demo.run_dir / "demo.json").read_text())["processes"] == {}
    assert "stopped" in demo.text


def _the_printed_environment_makes_tokens_the_actuator_knows(demo: Demo) -> None:
    # Issue 16: the hint exported the InfluxDB operator token, and `tokens create` wrote to another store (401).
    script = subprocess.run(
        _telestack("native", "env", "--run-dir", str(demo.run_dir)), env=_env(), capture_output=True, text=True
    )
    assert script.returncode == 0, script.stderr
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in script.stdout.splitlines() if line.startswith("export ")
    )
    operator = json.loads((demo.run_dir / "endpoints.json").read_text())["influx"]["token"]
    assert operator not in script.stdout
    env = {**_env(), **{key: shlex.split(value)[0] for key, value in exported.items()}}
    created = subprocess.run(
        _telestack("tokens", "create", "--name", "hint", "--scope", "read"), env=env, capture_output=True, text=True
    )
    assert created.returncode == 0, created.stderr
    state = json.loads((demo.run_dir / "demo.json").read_text())
    url = f"http://127.0.0.1:{state['ports']['actuator']}/v1/devices"
    response = httpx.get(url, headers={"Authorization": f"Bearer {created.stdout.strip()}"}, timeout=10)
    assert response.status_code == 200, response.text


def test_down_cleans_up_after_a_killed_supervisor(demo: Demo) -> None:
    pids = _pids(demo.run_dir)
    demo.proc.send_signal(signal.SIGKILL)
    demo.proc.wait(10)
    assert any(_alive(pid) for pid in pids)  # orphans: services, simulators, servers
    down = demo.down()
    assert down.returncode == 0, down.stderr
    wait_until(lambda: not [pid for pid in pids if _alive(pid)], timeout_s=30, what="every orphan stopped")


def _servers(run_dir: Path) -> dict[str, int]:
    return dict(json.loads((run_dir / "pids.json").read_text()))


def test_a_killed_server_and_a_killed_service_are_started_again(demo: Demo) -> None:
    """Issue 13, finding 6: the demo never restarted Kafka, Mosquitto or InfluxDB."""
    kafka = _servers(demo.run_dir)["kafka"]
    lag = json.loads((demo.run_dir / "demo.json").read_text())["processes"]["kafka-lag"]
    os.killpg(kafka, signal.SIGKILL)
    os.killpg(lag, signal.SIGKILL)
    wait_until(
        lambda: _servers(demo.run_dir)["kafka"] != kafka and _alive(_servers(demo.run_dir)["kafka"]),
        timeout_s=60,
        what="Kafka started again by the demo",
    )
    wait_until(
        lambda: "kafka-lag had exited" in demo.text and "kafka had exited" in demo.text,
        timeout_s=60,
        what="both restarts reported",
    )
    status = subprocess.run(
        _telestack("demo", "status", "--run-dir", str(demo.run_dir)), env=_env(), capture_output=True, text=True
    )
    assert "EXITED" not in status.stdout, status.stdout


def test_down_stops_the_servers_when_their_pid_file_is_gone(demo: Demo) -> None:
    """Issue 13, finding 6: `make demo-down` left the servers running once pids.json was gone."""
    servers = list(_servers(demo.run_dir).values())
    demo.proc.send_signal(signal.SIGKILL)
    demo.proc.wait(10)
    (demo.run_dir / "pids.json").unlink()
    down = demo.down()
    assert down.returncode == 0, down.stderr
    wait_until(lambda: not [pid for pid in servers if _alive(pid)], timeout_s=30, what="every server stopped")


def test_check_passes_on_a_fresh_machine_within_a_minute(run_dir: Path) -> None:
    proc = subprocess.run(
        _telestack("demo", "check", "--run-dir", str(run_dir), "--timeout", "60"),
        env=_env(),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for simulator in ("vehicle", "fermenters", "energy-meter", "smart-plug"):
        assert f"ok       {simulator}" in proc.stdout
    assert "OK: every simulator's data reached InfluxDB" in proc.stdout
    assert "acked" in proc.stdout

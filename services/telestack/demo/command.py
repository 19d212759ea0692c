"""``telestack demo``: the whole stack on this machine without Docker, with simulated devices.

    telestack demo up        # start everything, print where it is; Ctrl-C stops it all   (make demo)
    telestack demo down      # stop a demo started from another terminal                  (make demo-down)
    telestack demo check     # fresh demo, wait for every simulator's data in InfluxDB, stop (make demo-check)
    telestack demo status

Servers, services and simulators are processes under the run directory (default .native/demo): data, logs
(logs/<name>.log), credentials (endpoints.json, mode 0600).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from telestack.core.runtime import Shutdown
from telestack.demo.stack import SIMULATORS, DemoError, DemoInfo, DemoStack
from telestack.native.servers import stop_process_group
from telestack.native.stack import stop_run_dir

__all__ = ["configure", "run"]

DEFAULT_RUN_DIR = Path(".native/demo")
CHECK_RUN_DIR = Path(".native/demo-check")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__
    parser.add_argument("action", choices=["up", "down", "check", "status"], help="what to do")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help=f"data, logs and credentials (default: {DEFAULT_RUN_DIR}; check: {CHECK_RUN_DIR}, emptied first)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="check: how long the simulators' data may take, s (default: 60)"
    )


def _say(message: str) -> None:
    # The terminal (or pipe) may be gone while the demo stops: stopping matters more than saying so.
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"[telestack demo] {message}\n")
        sys.stderr.flush()


def _alive(pid: int | None) -> bool:
    """Running (an exited process waiting to be reaped by its parent, a zombie, is not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False
    except (OSError, IndexError):
        return True  # no /proc here: kill(0) said it exists


def _is_telestack(pid: int) -> bool:
    """Guards against a recycled pid: the process must still be one of ours."""
    try:
        return b"telestack" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _state(run_dir: Path) -> dict[str, object]:
    path = run_dir / "demo.json"
    return json.loads(path.read_text()) if path.exists() else {}


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check((args.run_dir or CHECK_RUN_DIR).resolve(), args.timeout)
    run_dir = (args.run_dir or DEFAULT_RUN_DIR).resolve()
    if args.action == "up":
        return _up(run_dir)
    if args.action == "down":
        return _down(run_dir)
    state = _state(run_dir)
    pid = state.get("supervisor_pid")
    if isinstance(pid, int) and _alive(pid):
        sys.stdout.write(f"running (supervisor pid {pid}, {run_dir})\n")
        for name, child in dict(state.get("processes", {})).items():  # type: ignore[call-overload]
            sys.stdout.write(f"  {name:<22} pid {child:<8} {'up' if _alive(child) else 'EXITED'}\n")
        return 0
    sys.stdout.write(f"not running ({run_dir})\n")
    return 3


def _up(run_dir: Path) -> int:
    pid = _state(run_dir).get("supervisor_pid")
    if isinstance(pid, int) and pid != os.getpid() and _alive(pid):
        raise DemoError(f"a demo is already running from {run_dir} (pid {pid}); 'telestack demo down' stops it")
    with Shutdown() as shutdown:  # its exit also restores SIGINT, ignored below while the stack stops
        return _supervise(DemoStack(run_dir), run_dir, shutdown)


def _supervise(stack: DemoStack, run_dir: Path, shutdown: Shutdown) -> int:
    try:
        info = stack.start(report=_say)
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.write(_summary(info, run_dir))
            sys.stdout.flush()
        while not shutdown.wait(1.0):
            # As compose's `restart: unless-stopped`: what stops on its own (a server too) is started again,
            # with backoff; see RestartPolicy.
            for restarted in stack.restart_exited():
                _say(
                    f"{restarted.name} had exited with status {restarted.returncode}; started again "
                    f"(restart {restarted.restarts} since it was last healthy); "
                    f"last lines of {restarted.log_path} before it:\n{restarted.log_tail}"
                )
    finally:
        _say("stopping: simulators, services, then the servers")
        # A second Ctrl-C while draining would interrupt the stop; ignore it, the stop is bounded anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        _say("stopped")
    return 0


def _down(run_dir: Path) -> int:
    state = _state(run_dir)
    pid = state.get("supervisor_pid")
    if isinstance(pid, int) and _alive(pid):
        _say(f"asking the demo (pid {pid}) to stop")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            _say(f"pid {pid} did not stop within 90 s; stopping its processes directly")
    # The supervisor is gone (stopped, or killed): stop whatever it left behind.
    state = _state(run_dir)
    leftovers = dict(state.get("processes", {}))  # type: ignore[call-overload]
    orphans = {name: child for name, child in leftovers.items() if _alive(child) and _is_telestack(child)}
    if orphans:
        _say(f"stopping {', '.join(orphans)}")
        _stop_all(list(orphans.values()), timeout_s=20)
    stopped = stop_run_dir(run_dir)
    if isinstance(pid, int):
        _say("stopped")
    elif not leftovers and not stopped:
        _say(f"nothing running from {run_dir}")
    return 0


def _stop_all(pids: list[int], timeout_s: float) -> None:
    """SIGTERM to every process group at once (they drain in parallel), SIGKILL to those left at the deadline."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            stop_process_group(pid, timeout_s=0)


def _check(run_dir: Path, timeout_s: float) -> int:
    """A fresh demo; every simulator's data must reach InfluxDB within `timeout_s` of the simulators' start."""
    ports = _state(run_dir).get("ports")
    if run_dir.exists():
        shutil.rmtree(run_dir)  # fresh: no data, no credentials from an earlier run
    if ports:  # ...but the ports it chose, so a check never moves onto ports other things use meanwhile
        run_dir.mkdir(parents=True)
        (run_dir / "demo.json").write_text(json.dumps({"ports": ports}) + "\n")
    started = time.monotonic()
    stack = DemoStack(run_dir)
    seen: dict[str, float] = {}
    missing: dict[str, list[str]] = {}
    try:
        info = stack.start(report=_say)
        since = info.timings["simulators_started_at"]
        _say(
            f"ready in {info.timings['ready_s']:.1f} s (servers {info.timings['servers_s']:.1f} s, "
            f"services {info.timings['services_s']:.1f} s); waiting for every simulator's data in InfluxDB"
        )
        simulators = sorted({expected.simulator for expected in SIMULATORS})
        while True:
            missing = stack.missing_data()
            for name in simulators:
                if name not in missing and name not in seen:
                    seen[name] = time.time() - since
                    _say(f"{name}: data in InfluxDB {seen[name]:.1f} s after the simulators started")
            if not missing or time.time() - since > timeout_s:
                break
            time.sleep(1)
        for process in stack.exited():
            _say(f"{process.name} exited with status {process.returncode()}:\n{process.log_tail()}")
    finally:
        stack.stop()
    total = time.monotonic() - started
    out = sys.stdout
    out.write(f"demo check ({run_dir}), {total:.1f} s in all:\n")
    for name in sorted({expected.simulator for expected in SIMULATORS}):
        if name in seen:
            out.write(f"  ok       {name:<14} in InfluxDB after {seen[name]:.1f} s\n")
        else:
            out.write(f"  MISSING  {name:<14} {'; '.join(missing.get(name, ['?']))}\n")
    out.write(f"demo command: {info.command_outcome}\n")
    if missing:
        out.write(f"FAILED: data missing after {timeout_s:.0f} s; logs in {run_dir / 'logs'}\n")
        return 1
    out.write(f"OK: every simulator's data reached InfluxDB within {max(seen.values()):.1f} s\n")
    return 0


def _summary(info: DemoInfo, run_dir: Path) -> str:
    e = info.endpoints
    cwd = Path.cwd()
    shown = run_dir.relative_to(cwd) if run_dir.is_relative_to(cwd) else run_dir
    services = "  ".join(f"{name} :{info.ports[name]}" for name in sorted(info.ports) if name not in _SERVER_NAMES)
    return f"""
telestack demo is running ({shown}; logs in {shown}/logs). Ctrl-C or 'make demo-down' stops everything.

  Kafka       {e.kafka.bootstrap_servers}   topics telemetry, telemetry.dlq, can.raw, alerts, commands
  MQTT        {e.mqtt.host}:{e.mqtt.port}   services, user {e.mqtt.username} (password in {shown}/endpoints.json)
              {e.mqtt.host}:{e.mqtt.device_port}   devices: each logs in as itself, its client id is its login
  InfluxDB    {e.influx.url}   org {e.influx.org}, bucket {e.influx.bucket}   read-only token: {info.read_token}
  actuator    {info.url("actuator")}/ui   API {info.url("actuator")}/docs   admin token: {info.actuator_token}
  services    {services}   (each: /healthz, /metrics)
  simulators  a car on 3 CAN buses, fermenters f1 f2 f3, meter compteur-1, plug plug-1
  command     {info.command_outcome}   (an alert fires ~30 s later: telestack/alerts/# on MQTT, alerts in InfluxDB)

  live values:   .venv/bin/telestack tail --run-dir {shown}
  environment:   eval "$(.venv/bin/telestack native env --run-dir {shown})"   then any telestack command
  switch a plug: curl -X POST -H "Authorization: Bearer {info.actuator_token}" -H 'Content-Type: application/json' \\
                   -d '{{"command": "toggle"}}' '{info.url("actuator")}/v1/devices/plug-1/commands?wait=5'

"""


_SERVER_NAMES = {"kafka", "kafka_controller", "mqtt", "mqtt_devices", "influx"}

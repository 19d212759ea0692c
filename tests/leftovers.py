"""What an interrupted test run leaves behind, found and stopped by the next run.

Ctrl-C, a CI timeout or a killed xdist worker skip the session's teardown: whole demo stacks (Kafka, InfluxDB,
Mosquitto, the services) and server containers keep running and slow every later run. Each run marks what it
starts: processes inherit ``PYTEST_TELESTACK_OWNER`` (pid and start time of the pytest process that owns the run),
containers carry it in their environment. At the start of the next run, whatever carries an owner that is no longer
running is stopped. A run still going (another checkout's, a helper's) is never touched: its owner is alive.

The name does not start with ``TELESTACK_``: the harnesses hand services an environment without those.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["OWNER_VAR", "mark_owner", "sweep"]

OWNER_VAR = "PYTEST_TELESTACK_OWNER"


def _started_at(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def mark_owner() -> str:
    """This run's owner mark, set in the environment once (xdist workers inherit the controller's)."""
    if OWNER_VAR not in os.environ:
        os.environ[OWNER_VAR] = f"{os.getpid()}:{_started_at(os.getpid())}"
    return os.environ[OWNER_VAR]


def _alive(owner: str) -> bool:
    pid, _, started = owner.partition(":")
    return pid.isdigit() and _started_at(int(pid)) == started


def _owner_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(OWNER_VAR.encode() + b"="):
            return entry.partition(b"=")[2].decode(errors="replace")
    return None


def _orphan_processes(current: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            owner = _owner_of(int(entry.name))
            if owner is not None and owner != current and not _alive(owner):
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Still there and not a zombie (one that ended and waits for its parent to read its status)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _stop(pids: Iterable[int], grace_s: float = 5.0) -> None:
    """SIGTERM (servers close cleanly), then SIGKILL what is still running after `grace_s`."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _orphan_containers(current: str) -> list[object]:
    """Containers carrying a dead owner, on the engine DOCKER_HOST names (none without one)."""
    if not os.environ.get("DOCKER_HOST"):
        return []
    try:
        import docker

        client = docker.from_env(timeout=10)
        containers = client.containers.list(all=True)
    except Exception:  # no engine answering: nothing of ours runs there either
        return []
    found = []
    for container in containers:
        env = container.attrs.get("Config", {}).get("Env") or []
        owner = next((e.partition("=")[2] for e in env if e.startswith(OWNER_VAR + "=")), None)
        if owner is not None and owner != current and not _alive(owner):
            found.append(container)
    return found


def sweep() -> str | None:
    """Stop what earlier, interrupted runs left running; a sentence saying what, or None if nothing."""
    current = mark_owner()
    pids = _orphan_processes(current)
    containers = _orphan_containers(current)
    if not pids and not containers:
        return None
    names = sorted({_command(pid) for pid in pids} | {str(getattr(c, "name", "?")) for c in containers})
    _stop(pids)
    for container in containers:
        with contextlib.suppress(Exception):
            container.remove(force=True)  # type: ignore[attr-defined]
    return (
        f"stopped what an interrupted earlier run left running: {len(pids)} processes, "
        f"{len(containers)} containers ({', '.join(names)})"
    )


def _command(pid: int) -> str:
    """The process's command name (``comm``), to say what was stopped."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"

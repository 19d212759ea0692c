"""telestack services run as child processes: started with their own environment and log file, stopped in order.

Each child gets its own session (process group), so a Ctrl-C in the terminal reaches only the supervisor,
which then stops the children in the right order (simulators first, so the services drain what they sent).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ManagedProcess", "RestartPolicy", "telestack_argv", "wait_all_stopped"]


def telestack_argv(*args: str) -> list[str]:
    """The command line of ``telestack <args>`` with this interpreter (works without the console script)."""
    return [sys.executable, "-m", "telestack", *args]


class ManagedProcess:
    """One child process: ``start``, ``alive``, ``stop`` (SIGTERM, then SIGKILL), and the tail of its log."""

    def __init__(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.previous_log_tail = ""  # the log's end and exit status when it was last restarted
        self.previous_returncode: int | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout_s: float = 15) -> None:
        """SIGTERM (the service drains), then SIGKILL after `timeout_s`."""
        if not self.alive():
            return
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def wait_all_stopped(processes: Sequence[ManagedProcess], timeout_s: float) -> None:
    """SIGTERM to every process at once, then wait for all (SIGKILL for those still running at the deadline)."""
    for proc in processes:
        if proc.alive() and proc.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in processes:
        if proc.process is None:
            continue
        try:
            proc.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.stop(timeout_s=0)


@dataclass
class _Restarts:
    count: int = 0  # restarts since the process was last healthy
    started_at: float | None = None
    restart_at: float | None = None  # set while it is down, waiting for its backoff


class RestartPolicy:
    """When to start again a process that stopped on its own, as compose's ``restart: unless-stopped``.

    Exponential backoff (`base_s` doubling up to `max_s`) so a process that keeps failing (its server is away)
    costs one start per `max_s`, never a spin; the count goes back to zero once a run lasted `healthy_after_s`,
    so a process that failed a few times long ago starts again at once. It never gives up: a demo must come
    back after an outage of any length. Pure: the caller passes the time.

    >>> policy = RestartPolicy(base_s=1, max_s=4, healthy_after_s=60)
    >>> delays = []
    >>> for t in (0.0, 2.0, 5.0, 10.0):  # each run lasts 1 s
    ...     policy.started("lag", now=t)
    ...     policy.exited("lag", now=t + 1)
    ...     delays.append(policy.delay("lag"))
    >>> delays
    [1.0, 2.0, 4.0, 4.0]
    >>> policy.started("lag", now=20.0)
    >>> policy.exited("lag", now=200.0)  # that run lasted 180 s: healthy, so the count starts again
    >>> policy.delay("lag"), policy.due("lag", now=200.5), policy.due("lag", now=201.0)
    (1.0, False, True)
    """

    def __init__(
        self,
        base_s: float = 1.0,
        max_s: float = 60.0,
        healthy_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.healthy_after_s = healthy_after_s
        self.clock = clock
        self._state: dict[str, _Restarts] = {}

    def started(self, name: str, now: float | None = None) -> None:
        state = self._state.setdefault(name, _Restarts())
        state.started_at = self.clock() if now is None else now
        state.restart_at = None

    def exited(self, name: str, now: float | None = None) -> None:
        """Note that `name` stopped on its own (once per exit); its restart is due after `delay`."""
        now = self.clock() if now is None else now
        state = self._state.setdefault(name, _Restarts())
        if state.restart_at is not None:
            return
        if state.started_at is not None and now - state.started_at >= self.healthy_after_s:
            state.count = 0
        state.count += 1
        state.restart_at = now + self.delay(name)

    def delay(self, name: str) -> float:
        count = self._state.get(name, _Restarts()).count
        return float(min(self.max_s, self.base_s * 2 ** max(0, count - 1)))

    def waiting(self, name: str) -> bool:
        state = self._state.get(name)
        return state is not None and state.restart_at is not None

    def due(self, name: str, now: float | None = None) -> bool:
        state = self._state.get(name)
        now = self.clock() if now is None else now
        return state is not None and state.restart_at is not None and now >= state.restart_at

    def restarts(self, name: str) -> int:
        """Restarts since `name` was last healthy."""
        return self._state.get(name, _Restarts()).count

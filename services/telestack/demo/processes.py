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
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["ManagedProcess", "telestack_argv", "wait_all_stopped"]


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

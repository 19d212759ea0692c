"""tests/leftovers.py: what a dead run left running is stopped; what a live run owns is left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests import leftovers


def _dead_owner() -> str:
    """The mark of a run that has ended: a process that started and exited."""
    process = subprocess.Popen(["sleep", "0.2"])
    mark = f"{process.pid}:{leftovers._started_at(process.pid)}"
    process.wait()
    return mark


Start = Callable[[str], "subprocess.Popen[bytes]"]


@pytest.fixture
def sleeper() -> Iterator[Start]:
    """Start a process that carries an owner mark, as a run's servers do; killed after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(owner: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, leftovers.OWNER_VAR: owner}
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
        started.append(process)
        while leftovers._owner_of(process.pid) != owner:  # exec done: /proc shows the new environment
            time.sleep(0.01)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_a_process_whose_run_died_is_stopped(sleeper: Start) -> None:
    orphan = sleeper(_dead_owner())
    assert orphan.pid in leftovers._orphan_processes(leftovers.mark_owner())
    leftovers._stop([orphan.pid], grace_s=5)
    assert orphan.wait(timeout=5) == -15  # SIGTERM first: servers get to close cleanly


def test_a_live_runs_processes_are_left_alone(sleeper: Start) -> None:
    ours = sleeper(leftovers.mark_owner())
    other_live_run = sleeper(f"{os.getppid()}:{leftovers._started_at(os.getppid())}")
    found = leftovers._orphan_processes(leftovers.mark_owner())
    assert ours.pid not in found and other_live_run.pid not in found
    assert ours.poll() is None and other_live_run.poll() is None


def test_a_reused_pid_is_not_the_owner() -> None:
    pid = os.getpid()
    assert leftovers._alive(f"{pid}:{leftovers._started_at(pid)}")
    assert not leftovers._alive(f"{pid}:1")  # same pid, another start time: a different process
    assert not leftovers._alive("not-a-pid:0")

"""Child processes of the demo: each in its own session, stopped with SIGTERM, killed when it ignores it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from telestack.demo.processes import ManagedProcess, wait_all_stopped

IGNORES_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
)
STOPS_ON_TERM = "import time; print('up', flush=True); time.sleep(60)"


def _process(tmp_path: Path, name: str, code: str) -> ManagedProcess:
    return ManagedProcess(
        name, [sys.executable, "-c", code], env=dict(os.environ), cwd=tmp_path, log_path=tmp_path / f"{name}.log"
    )


def test_stop_terms_then_kills(tmp_path: Path) -> None:
    polite = _process(tmp_path, "polite", STOPS_ON_TERM)
    stubborn = _process(tmp_path, "stubborn", IGNORES_TERM)
    for process in (polite, stubborn):
        process.start()
        assert process.pid is not None and os.getpgid(process.pid) == process.pid  # its own session
    while "up" not in stubborn.log_tail():  # SIG_IGN installed
        time.sleep(0.05)
    started = time.monotonic()
    wait_all_stopped([polite, stubborn], timeout_s=1.0)
    assert time.monotonic() - started < 5
    assert polite.returncode() == -15 and stubborn.returncode() == -9
    assert "up" in polite.log_tail()

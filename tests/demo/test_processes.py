"""Child processes of the demo: each in its own session, stopped with SIGTERM, killed when it ignores it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from telestack.demo.processes import ManagedProcess, RestartPolicy, wait_all_stopped
from tests.polling import wait_until

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
    # Both running their code (the stubborn one has SIG_IGN installed): on a loaded machine (ci43) the polite one
    # could still be starting Python when it was sent SIGTERM, and then printed nothing.
    wait_until(lambda: all("up" in process.log_tail() for process in (polite, stubborn)), 60, what="both processes up")
    started = time.monotonic()
    wait_all_stopped([polite, stubborn], timeout_s=1.0)
    assert time.monotonic() - started < 5
    assert polite.returncode() == -15 and stubborn.returncode() == -9
    assert "up" in polite.log_tail()


def test_restarts_back_off_never_give_up_and_reset_after_a_healthy_run() -> None:
    """Issue 13, finding 5: 5 restarts without backoff that never reset, then dead for good after a 40 s outage."""
    policy = RestartPolicy(base_s=1, max_s=60, healthy_after_s=60)
    now, starts = 0.0, [0.0]
    policy.started("kafka-lag", now=now)
    while now < 40:  # Kafka away for 40 s: each start fails after 0.5 s
        now += 0.5
        policy.exited("kafka-lag", now=now)
        assert not policy.due("kafka-lag", now=now)  # never at once: no spin
        now += policy.delay("kafka-lag")
        assert policy.due("kafka-lag", now=now)
        policy.started("kafka-lag", now=now)
        starts.append(now)
    assert len(starts) < 10  # 1, 2, 4, 8, 16... s apart: not a tight loop
    assert policy.restarts("kafka-lag") > 5  # and it went on past the old limit of 5
    now += 120  # Kafka back: a long healthy run
    policy.exited("kafka-lag", now=now)
    assert policy.restarts("kafka-lag") == 1 and policy.delay("kafka-lag") == 1

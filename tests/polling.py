"""Waiting for a condition with a deadline, instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


FIRST_INTERVAL_S = 0.002


def wait_until(condition: Callable[[], T], timeout_s: float = 20, interval_s: float = 0.1, what: str = "") -> T:
    """Poll `condition` until it returns something truthy and return it; fail the test after `timeout_s`.

    The pause between polls starts at 2 ms and doubles up to `interval_s`: most conditions (a PUBACK, a
    delivery) hold within milliseconds, and a fixed 100 ms pause made each such wait cost 100 ms (an MQTT ACL
    test that waits for 60 acknowledgements took 8 s). A slow condition is still polled every `interval_s`.
    """
    deadline = time.monotonic() + timeout_s
    pause = min(FIRST_INTERVAL_S, interval_s)
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what or 'condition'} not met within {timeout_s} s (last value: {result!r})")
        time.sleep(pause)
        pause = min(pause * 2, interval_s)


def wait_while_progressing(
    condition: Callable[[], T],
    progress: Callable[[], object],
    *,
    stall_s: float,
    limit_s: float,
    interval_s: float = 0.5,
    what: str = "",
) -> T:
    """`wait_until`, bounded by progress: fail once `progress()` (a count of lines written, say) has not changed
    for `stall_s`, or after `limit_s` in all. For work that reports as it goes and whose length depends on the
    machine's load (ci47: a demo that came up in 128 s beside a busy suite, against a fixed 90 s)."""
    started = time.monotonic()
    seen, moved = progress(), started
    pause = min(FIRST_INTERVAL_S, interval_s)
    while True:
        result = condition()
        if result:
            return result
        now = time.monotonic()
        current = progress()
        if current != seen:
            seen, moved = current, now
        if now - moved > stall_s or now - started > limit_s:
            pytest.fail(
                f"{what or 'condition'} not met: no progress for {now - moved:.0f} s (at most {stall_s:.0f}), "
                f"{now - started:.0f} s in all (at most {limit_s:.0f}); last value: {result!r}"
            )
        time.sleep(pause)
        pause = min(pause * 2, interval_s)

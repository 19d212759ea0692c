"""Waiting for a condition with a deadline, instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float = 20, interval_s: float = 0.1, what: str = "") -> T:
    """Poll `condition` until it returns something truthy and return it; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what or 'condition'} not met within {timeout_s} s (last value: {result!r})")
        time.sleep(interval_s)

"""Capped exponential backoff, jitter bounds and Retry-After."""

from __future__ import annotations

from telestack.core.backoff import MAX_RETRY_AFTER_S, Backoff


def test_delay_doubles_up_to_the_cap() -> None:
    policy = Backoff(initial_s=0.1, max_s=1.0, jitter=0.0)
    assert [policy.delay(a) for a in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.delay(10_000) == 1.0  # no overflow on long outages


def test_jitter_stays_within_its_fraction_and_under_the_cap() -> None:
    policy = Backoff(initial_s=1.0, max_s=10.0, jitter=0.2)
    assert policy.delay(0, rand=0.0) == 0.8
    assert policy.delay(0, rand=0.999999) < 1.2 + 1e-6
    assert policy.delay(20, rand=0.999999) == 10.0


def test_retry_after_wins_but_is_bounded() -> None:
    policy = Backoff(initial_s=0.1, max_s=1.0)
    assert policy.delay(0, retry_after_s=7.0) == 7.0
    assert policy.delay(0, retry_after_s=1e9) == MAX_RETRY_AFTER_S
    assert policy.delay(0, retry_after_s=0.0, rand=0.5) == 0.1

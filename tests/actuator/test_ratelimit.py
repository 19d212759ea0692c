"""The per-token rate limiter (a token bucket)."""

from __future__ import annotations

from telestack.actuator.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_sustained_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [None, None, None]
    assert limiter.acquire("a") == 0.5
    clock.now += 0.5
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") is not None
    clock.now += 60  # refills, but only up to the burst
    assert [limiter.acquire("a") for _ in range(4)][-1] is not None


def test_callers_have_separate_budgets_and_zero_disables() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=Clock())
    assert limiter.acquire("a") is None and limiter.acquire("a") is not None
    assert limiter.acquire("b") is None
    unlimited = RateLimiter(rate_per_s=0, burst=1)
    assert all(unlimited.acquire("a") is None for _ in range(1000))

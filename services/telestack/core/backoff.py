"""Capped exponential backoff with jitter, honouring a server's Retry-After: every retry loop of the stack waits
this way (the writer's InfluxDB writes, the bridge's MQTT reconnects, alerting's annotations and notifiers).

>>> policy = Backoff(initial_s=0.2, max_s=5.0, jitter=0.0)
>>> [policy.delay(attempt) for attempt in range(7)]
[0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
>>> policy.delay(0, retry_after_s=30.0)  # the server knows best (up to MAX_RETRY_AFTER_S)
30.0
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["MAX_RETRY_AFTER_S", "Backoff"]

MAX_RETRY_AFTER_S = 600.0  # a Retry-After longer than this is treated as a mistake


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float
    max_s: float
    multiplier: float = 2.0
    jitter: float = 0.2  # +- this fraction, so replicas do not retry in lockstep

    def delay(self, attempt: int, retry_after_s: float | None = None, rand: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based). `rand` in [0, 1) replaces the random draw."""
        if retry_after_s is not None and retry_after_s > 0:
            return min(retry_after_s, MAX_RETRY_AFTER_S)
        base = min(self.max_s, self.initial_s * self.multiplier ** min(attempt, 64))
        if not self.jitter:
            return round(base, 6)
        draw = random.random() if rand is None else rand
        return round(min(self.max_s, base * (1 + self.jitter * (2 * draw - 1))), 6)

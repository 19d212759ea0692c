"""Bisecting a refused batch: every bad unit found, every good unit written, few requests."""

from __future__ import annotations

import math
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from telestack.influx_writer.isolation import isolate_rejected


class FakeInflux:
    """Refuses a chunk if it holds a bad unit (like a 400); records what was accepted."""

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad
        self.accepted: list[int] = []
        self.requests = 0

    def write(self, chunk: Sequence[int]) -> str | None:
        self.requests += 1
        refused = [u for u in chunk if u in self.bad]
        if refused:
            return f"unable to parse unit {refused[0]}"
        self.accepted.extend(chunk)
        return None


def test_one_bad_unit_is_found_in_log2_requests() -> None:
    influx = FakeInflux({700})
    rejected = isolate_rejected(list(range(1024)), influx.write, "batch refused")
    assert rejected == [(700, "unable to parse unit 700")]
    assert sorted(influx.accepted) == [u for u in range(1024) if u != 700]
    assert influx.requests == 2 * 10


def test_single_refused_unit_keeps_the_original_reason_without_a_request() -> None:
    influx = FakeInflux({0})
    assert isolate_rejected([0], influx.write, "original") == [(0, "original")]
    assert influx.requests == 0


def test_chunk_refused_only_as_a_whole_is_written_in_halves() -> None:
    # Like a 413 (too large): each half alone is fine.
    calls: list[int] = []

    def write(chunk: Sequence[int]) -> str | None:
        calls.append(len(chunk))
        return "too large" if len(chunk) > 4 else None

    assert isolate_rejected(list(range(16)), write, "too large") == []
    assert calls == [8, 8, 4, 4, 4, 4]


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
def test_bad_units_are_exactly_the_rejected_ones_in_order(case: tuple[int, set[int]]) -> None:
    n, bad = case
    influx = FakeInflux(bad)
    units = list(range(n))
    if not bad:
        return
    rejected = isolate_rejected(units, influx.write, "refused")
    assert [u for u, _ in rejected] == sorted(bad)
    assert sorted(influx.accepted) == [u for u in units if u not in bad]
    assert influx.requests <= 2 * len(bad) * (math.ceil(math.log2(n)) + 1)

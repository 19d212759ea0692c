"""A partition whose leader is settling is asked again, within the reader's deadline; any other error is not."""

from __future__ import annotations

import time
from collections.abc import Callable

import confluent_kafka
import pytest

from telestack.core.topic_reader import _settled


def _failing(codes: list[int], result: str = "watermarks") -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def ask() -> str:
        calls.append(1)
        if len(calls) <= len(codes):
            raise confluent_kafka.KafkaException(confluent_kafka.KafkaError(codes[len(calls) - 1]))
        return result

    return calls, ask


def test_not_leader_for_a_moment_is_asked_again() -> None:
    calls, ask = _failing([confluent_kafka.KafkaError.NOT_LEADER_FOR_PARTITION] * 2)
    assert _settled(ask, time.monotonic() + 10) == "watermarks"
    assert len(calls) == 3


def test_other_errors_and_a_passed_deadline_are_raised() -> None:
    calls, ask = _failing([confluent_kafka.KafkaError._TIMED_OUT])
    with pytest.raises(confluent_kafka.KafkaException):
        _settled(ask, time.monotonic() + 10)
    assert len(calls) == 1
    calls, ask = _failing([confluent_kafka.KafkaError.LEADER_NOT_AVAILABLE] * 100)
    with pytest.raises(confluent_kafka.KafkaException):
        _settled(ask, time.monotonic() + 0.5)
    assert 2 <= len(calls) <= 5

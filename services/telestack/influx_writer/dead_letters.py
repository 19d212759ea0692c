"""Records InfluxDB refused, sent to ``telemetry.dlq`` with the reason and their origin in headers.

Headers of a dead letter (all UTF-8 text):

    reason            InfluxDB's error text for this record or line
    influx.status     the HTTP status of the refusal (400, 413 or 422)
    source.topic      where the record was consumed from
    source.partition
    source.offset
    source.service    influx-writer

The value is the refused line protocol (the whole record, or only its refused lines); the key and the
timestamp are the original record's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from telestack.core.kafka import Delivery, KafkaProducer, Record
from telestack.influx_writer.errors import DeadLetterError

__all__ = ["DeadLetter", "DeadLetterError", "DeadLetterQueue", "dead_letter_headers"]

SERVICE = "influx-writer"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A refused record, or refused line(s) of a record."""

    record: Record
    value: bytes
    reason: str
    status: int


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, str]]:
    rec = letter.record
    return [
        ("reason", letter.reason),
        ("influx.status", str(letter.status)),
        ("source.topic", rec.topic),
        ("source.partition", str(rec.partition)),
        ("source.offset", str(rec.offset)),
        ("source.service", SERVICE),
    ]


class DeadLetterQueue:
    """Sends dead letters and waits for Kafka to confirm every one of them."""

    def __init__(self, producer: KafkaProducer, topic: str, *, timeout_s: float = 30) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Return once all are confirmed; raise `DeadLetterError` otherwise (the caller retries)."""
        deliveries: list[Delivery] = []
        for letter in letters:
            self.producer.produce(
                self.topic,
                letter.value,
                key=letter.record.key,
                headers=dead_letter_headers(letter),
                timestamp_ms=letter.record.timestamp_ms,
                on_delivery=deliveries.append,
                block_s=self.timeout_s,
            )
        self.producer.flush(self.timeout_s)
        failed = [d for d in deliveries if not d.ok]
        if failed or len(deliveries) < len(letters):
            detail = failed[0].error if failed else "not confirmed in time"
            raise DeadLetterError(
                f"{len(letters) - len(deliveries) + len(failed)} of {len(letters)} dead letters not confirmed "
                f"by Kafka ({detail})"
            )

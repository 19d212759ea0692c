"""Kafka consumer lag per group and topic: how far each consumer group is behind the end of its topics.

Read from the brokers with the admin API (committed offsets and end offsets), so it sees every group
(influx-writer, alerting, ...) without asking the services. `telestack kafka-lag` serves it on /metrics
for Telegraf, the Pipeline health dashboard shows it.

Every way a probe can fail while Kafka is away (a `KafkaException`, or a future that is not done within the
timeout: `TimeoutError`) is raised as `KafkaError`, so a caller has one thing to catch.
"""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from telestack.core.errors import KafkaError
from telestack.core.kafka import admin_client
from telestack.core.settings import KafkaSettings

__all__ = ["LagProbe", "lag_by_topic"]

# What a probe of an unreachable or frozen Kafka raises: translated to KafkaError below.
_PROBE_ERRORS = (KafkaException, TimeoutError)

Partition = tuple[str, int]


def lag_by_topic(committed: Mapping[Partition, int], ends: Mapping[Partition, int]) -> dict[str, int]:
    """Records not yet consumed, summed per topic; a partition without a committed offset counts whole.

    >>> lag_by_topic({("t", 0): 5, ("t", 1): -1001}, {("t", 0): 8, ("t", 1): 4})
    {'t': 7}
    """
    lag: dict[str, int] = {}
    for (topic, partition), end in ends.items():
        offset = committed.get((topic, partition), -1)
        behind = end if offset < 0 else max(0, end - offset)
        lag[topic] = lag.get(topic, 0) + behind
    return lag


class LagProbe:
    """Committed and end offsets of consumer groups, read with one admin client."""

    def __init__(self, settings: KafkaSettings, timeout_s: float = 10) -> None:
        self.admin = admin_client(settings)
        self.timeout_s = timeout_s

    def groups(self) -> list[str]:
        try:
            result = self.admin.list_consumer_groups(request_timeout=self.timeout_s).result(self.timeout_s)
        except _PROBE_ERRORS as exc:
            raise KafkaError(f"cannot list consumer groups: {exc}") from exc
        if result.errors:
            # Some brokers did not answer (all of them, when Kafka is away: librdkafka then sometimes completes
            # the request with no group and only errors, instead of failing it). A partial list is no answer.
            raise KafkaError(f"cannot list consumer groups: {', '.join(str(error) for error in result.errors)}")
        return sorted(listing.group_id for listing in result.valid)

    def committed(self, group: str) -> dict[Partition, int]:
        try:
            futures = self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=self.timeout_s
            )
            partitions = futures[group].result(self.timeout_s).topic_partitions or []
        except _PROBE_ERRORS as exc:
            raise KafkaError(f"cannot read the offsets of group {group}: {exc}") from exc
        return {(tp.topic, tp.partition): tp.offset for tp in partitions}

    def ends(self, partitions: list[Partition]) -> dict[Partition, int]:
        if not partitions:
            return {}
        request = {TopicPartition(topic, partition): OffsetSpec.latest() for topic, partition in partitions}
        try:
            futures = self.admin.list_offsets(request, request_timeout=self.timeout_s)
            return {(tp.topic, tp.partition): future.result(self.timeout_s).offset for tp, future in futures.items()}
        except _PROBE_ERRORS as exc:
            raise KafkaError(f"cannot read end offsets: {exc}") from exc

    def lag(self, groups: list[str] | None = None) -> dict[str, dict[str, int]]:
        """group → topic → records behind, for `groups` (default: every group with committed offsets)."""
        result: dict[str, dict[str, int]] = {}
        for group in groups or self.groups():
            committed = self.committed(group)
            topics = {topic for topic, _ in committed}
            if not topics:
                continue
            partitions = self._partitions(topics)
            result[group] = lag_by_topic(committed, self.ends(partitions))
        return result

    def _partitions(self, topics: set[str]) -> list[Partition]:
        try:
            metadata = self.admin.list_topics(timeout=self.timeout_s)
        except _PROBE_ERRORS as exc:
            raise KafkaError(f"cannot read topic metadata: {exc}") from exc
        return [
            (name, partition)
            for name, topic in metadata.topics.items()
            if name in topics
            for partition in topic.partitions
        ]

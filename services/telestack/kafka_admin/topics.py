"""The Kafka topics of the stack, with their partitions, retention and cleanup policy, created before any service.

Services create a topic they miss with default settings; creating the layout first (``telestack topics
create``, the compose ``kafka-topics`` job, ``telestack demo``) gives every topic its intended shape::

    topic_layout:
      replication_factor: 3        # the scale profile: three brokers
      min_insync_replicas: 2
      telemetry: {partitions: 12, retention: 3d}
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from telestack.core.kafka import ensure_topics
from telestack.core.settings import KafkaSettings, Section, TelestackSettings
from telestack.influx_writer.settings import DURATION_PATTERN, duration_seconds

__all__ = ["TopicLayout", "TopicPlan", "TopicSpec", "TopicsSettings", "create_topics", "plan_topics"]


class TopicSpec(Section):
    partitions: int = Field(ge=1, description="number of partitions (the most consumers of a group that share it)")
    retention: str = Field(
        "7d", pattern=DURATION_PATTERN.pattern + "|^(0|inf)$", description="how long records are kept (0/inf: forever)"
    )
    compact: bool = Field(False, description="keep only the latest record per key (cleanup.policy=compact)")


class TopicLayout(Section):
    replication_factor: int = Field(1, ge=1, description="copies of every partition (3 in the scale profile)")
    min_insync_replicas: int = Field(
        1, ge=1, description="copies that must have a record before acks=all succeeds (2 with 3 brokers)"
    )
    telemetry: TopicSpec = Field(
        default_factory=lambda: TopicSpec(partitions=6, retention="7d"),
        description="line protocol from every source; partitions bound the writer and alerting replicas",
    )
    dlq: TopicSpec = Field(
        default_factory=lambda: TopicSpec(partitions=3, retention="30d"),
        description="rejected input with its reason; kept long enough to be looked at",
    )
    can_raw: TopicSpec = Field(
        default_factory=lambda: TopicSpec(partitions=6, retention="3d"),
        description="raw CAN frames, for re-decoding with a corrected DBC (the biggest topic: short retention)",
    )
    alerts: TopicSpec = Field(
        default_factory=lambda: TopicSpec(partitions=3, retention="90d"), description="alert state changes"
    )
    commands: TopicSpec = Field(
        default_factory=lambda: TopicSpec(partitions=3, retention="30d"),
        description="commands and acks: the audit trail (the actuator replays the last day at start)",
    )
    alerts_state: TopicSpec = Field(
        default_factory=lambda: TopicSpec(partitions=3, retention="inf", compact=True),
        description="alerting's state per alert instance (compacted: the latest record per key is kept)",
    )
    alerts_state_name: str = Field("alerts.state", description="name of alerting's state topic (alerting.state_topic)")


class TopicsSettings(TelestackSettings):
    """What ``telestack topics`` reads: where Kafka is, the topic names and the layout."""

    kafka: KafkaSettings = Field(default_factory=lambda: KafkaSettings())
    topic_layout: TopicLayout = Field(default_factory=lambda: TopicLayout())


@dataclass(frozen=True, slots=True)
class TopicPlan:
    name: str
    partitions: int
    config: dict[str, str]


# Alerting's compaction settings (see telestack.alerting.state_store): compact soon so a restart reads little.
_COMPACT_CONFIG = {
    "cleanup.policy": "compact",
    "min.cleanable.dirty.ratio": "0.1",
    "segment.ms": "3600000",
    "delete.retention.ms": "86400000",
}


def plan_topics(kafka: KafkaSettings, layout: TopicLayout) -> list[TopicPlan]:
    """Every topic with its Kafka configuration; pure, so the layout can be checked without a broker.

    >>> plans = plan_topics(KafkaSettings(), TopicLayout())
    >>> [(p.name, p.partitions, p.config["retention.ms"]) for p in plans][:2]
    [('telemetry', 6, '604800000'), ('telemetry.dlq', 3, '2592000000')]
    >>> next(p for p in plans if p.name == "alerts.state").config["cleanup.policy"]
    'compact'
    """
    names = kafka.topics
    specs = [
        (names.telemetry, layout.telemetry),
        (names.dlq, layout.dlq),
        (names.can_raw, layout.can_raw),
        (names.alerts, layout.alerts),
        (names.commands, layout.commands),
        (layout.alerts_state_name, layout.alerts_state),
    ]
    plans = []
    for name, spec in specs:
        seconds = duration_seconds(spec.retention)
        config = {"retention.ms": str(seconds * 1000 if seconds else -1)}
        if spec.compact:
            config.update(_COMPACT_CONFIG)
        if layout.replication_factor > 1:
            config["min.insync.replicas"] = str(min(layout.min_insync_replicas, layout.replication_factor))
        plans.append(TopicPlan(name, spec.partitions, config))
    return plans


def create_topics(kafka: KafkaSettings, layout: TopicLayout, timeout_s: float = 30) -> list[str]:
    """Create the topics of the layout that do not exist yet (existing ones are left as they are)."""
    plans = plan_topics(kafka, layout)
    return ensure_topics(
        kafka,
        {plan.name: plan.partitions for plan in plans},
        replication_factor=layout.replication_factor,
        config={plan.name: plan.config for plan in plans},
        timeout_s=timeout_s,
    )

"""The Kafka topics of the stack, with their partitions, retention and cleanup policy: the one place they are laid out.

``telestack topics create`` (the compose ``kafka-topics`` job, ``telestack demo``) creates them before any service
starts; a service only checks that the topics it uses exist (`require_topics`) and refuses to start otherwise,
naming the missing ones, so no topic is ever created with a broker's defaults (one partition, one replica)::

    topic_layout:
      replication_factor: 3        # the scale profile: three brokers
      min_insync_replicas: 2
      telemetry: {partitions: 12, retention: 3d}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from pydantic import BaseModel, Field

from telestack.core.durations import RetentionText, duration_seconds
from telestack.core.errors import ConfigError, KafkaError
from telestack.core.kafka import admin_client, ensure_topics
from telestack.core.settings import KafkaSettings, Section

__all__ = [
    "COMPACT_CONFIG",
    "TopicLayout",
    "TopicPlan",
    "TopicSpec",
    "TopicsMissing",
    "create_topics",
    "missing_topics",
    "moved_state_topic",
    "plan_topics",
    "require_topics",
]


class TopicSpec(Section):
    partitions: int = Field(ge=1, description="number of partitions (the most consumers of a group that share it)")
    retention: RetentionText = Field("7d", description="how long records are kept (0/inf: forever)")
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


@dataclass(frozen=True, slots=True)
class TopicPlan:
    name: str
    partitions: int
    config: dict[str, str]


# Compact soon, so that alerting reads little of its state topic at a restart (see telestack.alerting.state_store).
COMPACT_CONFIG = {
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
        (names.alerts_state, layout.alerts_state),
    ]
    plans = []
    for name, spec in specs:
        seconds = duration_seconds(spec.retention)
        config = {"retention.ms": str(seconds * 1000 if seconds else -1)}
        if spec.compact:
            config.update(COMPACT_CONFIG)
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


class TopicsMissing(ConfigError):
    """Topics a service uses do not exist: ``telestack topics create`` has not run against this Kafka."""

    def __init__(self, missing: list[str], bootstrap_servers: str) -> None:
        self.missing = missing
        super().__init__(
            f"Kafka topic(s) missing at {bootstrap_servers}: {', '.join(missing)}; create the stack's topics "
            "first with `telestack topics create` (the compose kafka-topics job and `telestack demo` run it)"
        )


def missing_topics(kafka: KafkaSettings, names: Iterable[str], timeout_s: float = 30) -> list[str]:
    """Those of `names` that Kafka does not have (asks for every topic, so none is auto-created by asking)."""
    try:
        existing = set(admin_client(kafka).list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise KafkaError(f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc}") from exc
    return sorted(set(names) - existing)


def require_topics(kafka: KafkaSettings, names: Iterable[str], timeout_s: float = 30) -> None:
    """Raise `TopicsMissing` unless every topic of `names` exists: what a service checks at start."""
    missing = missing_topics(kafka, names, timeout_s)
    if missing:
        raise TopicsMissing(missing, kafka.bootstrap_servers)


def moved_state_topic(data: Any, section: str, key: str) -> Any:
    """Settings as read, with a former name of the state topic (``<section>.<key>``) moved to its one place,
    ``kafka.topics.alerts_state``, so older settings files and environments keep working.

    >>> moved_state_topic({"alerting": {"state_topic": "s"}}, "alerting", "state_topic")
    {'alerting': {}, 'kafka': {'topics': {'alerts_state': 's'}}}
    """
    if not isinstance(data, dict) or not isinstance(data.get(section), dict) or key not in data[section]:
        return data
    options = dict(data[section])
    name = options.pop(key)
    kafka = data.get("kafka") or {}
    kafka = dict(kafka.model_dump() if isinstance(kafka, BaseModel) else kafka)
    topics = kafka.get("topics") or {}
    topics = dict(topics.model_dump() if isinstance(topics, BaseModel) else topics)
    topics.setdefault("alerts_state", name)  # an explicit kafka.topics.alerts_state wins
    return {**data, section: options, "kafka": {**kafka, "topics": topics}}

"""What ``telestack topics`` reads; the layout itself lives in `telestack.core.topics`, re-exported here."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from telestack.core.settings import KafkaSettings, TelestackSettings
from telestack.core.topics import TopicLayout, TopicPlan, TopicSpec, create_topics, moved_state_topic, plan_topics

__all__ = ["TopicLayout", "TopicPlan", "TopicSpec", "TopicsSettings", "create_topics", "plan_topics"]


class TopicsSettings(TelestackSettings):
    """What ``telestack topics`` reads: where Kafka is, the topic names and the layout."""

    kafka: KafkaSettings = Field(default_factory=lambda: KafkaSettings())
    topic_layout: TopicLayout = Field(default_factory=lambda: TopicLayout())

    @model_validator(mode="before")
    @classmethod
    def _former_state_topic_name(cls, data: Any) -> Any:
        return moved_state_topic(data, "topic_layout", "alerts_state_name")  # before kafka.topics.alerts_state

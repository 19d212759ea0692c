"""Kafka administration: the topic layout (`telestack topics`) and consumer lag (`telestack kafka-lag`)."""

"""Kafka, Mosquitto and InfluxDB as local processes, for machines without a Docker engine."""

from telestack.native.endpoints import Endpoints, InfluxEndpoint, KafkaEndpoint, MqttEndpoint
from telestack.native.stack import NativeStack

__all__ = ["Endpoints", "InfluxEndpoint", "KafkaEndpoint", "MqttEndpoint", "NativeStack"]

"""What every telestack service shares: settings, line protocol, Kafka, runtime (health, metrics, shutdown, logs)."""

from telestack.core.errors import (
    ConfigError,
    DeliveryError,
    KafkaError,
    LineProtocolError,
    ServerError,
    TelestackError,
)
from telestack.core.lineproto import Point, UInt, format_lines, format_point, parse_line, parse_lines

__all__ = [
    "ConfigError",
    "DeliveryError",
    "KafkaError",
    "LineProtocolError",
    "Point",
    "ServerError",
    "TelestackError",
    "UInt",
    "format_lines",
    "format_point",
    "parse_line",
    "parse_lines",
]

"""The exceptions telestack raises; third-party errors are translated at the boundary with ``raise ... from``.

    TelestackError
    ├── ConfigError            invalid or missing setting, found at start (names the setting)
    ├── LineProtocolError      a line that cannot be parsed or a point that cannot be written
    ├── KafkaError             the Kafka client failed
    │   ├── DeliveryError      a record was not confirmed by the broker
    │   ├── TopicNotFound      a topic read from does not exist
    │   └── RecordRejected     Kafka refuses the record itself (too large...): producing it again cannot succeed
    ├── InfluxError            InfluxDB answered with an error, or could not be reached
    │   ├── InfluxUnavailableError  5xx, 408, 429, timeout, connection refused: retry later (may carry Retry-After)
    │   ├── InfluxRejectedError     400/413/422: the data itself was refused; carries InfluxDB's error text
    │   │   └── InfluxQueryError    a Flux query failed, possibly mid-answer (an error table after a 200)
    │   └── InfluxAuthError         401/403: the token is wrong or lacks permission; not retried
    └── ServerError            a native server (Kafka, Mosquitto, InfluxDB) could not be installed or started

Each service package adds its own subtree in its own ``errors.py``, rooted at `TelestackError`.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeliveryError",
    "InfluxAuthError",
    "InfluxError",
    "InfluxQueryError",
    "InfluxRejectedError",
    "InfluxUnavailableError",
    "KafkaError",
    "LineProtocolError",
    "RecordRejected",
    "ServerError",
    "TelestackError",
    "TopicNotFound",
]


class TelestackError(Exception):
    """Base of every telestack exception."""


class ConfigError(TelestackError):
    """A setting is missing or invalid; the message names the setting and how to fix it."""


class LineProtocolError(TelestackError, ValueError):
    """A line of line protocol that cannot be parsed, or a point that cannot be serialized."""

    def __init__(self, reason: str, *, line_no: int | None = None, line: str | None = None) -> None:
        self.reason = reason
        self.line_no = line_no
        self.line = line
        where = f"line {line_no}: " if line_no is not None else ""
        super().__init__(where + reason)


class KafkaError(TelestackError):
    """The Kafka client reported an error."""


class DeliveryError(KafkaError):
    """A produced record was not acknowledged by the broker."""


class TopicNotFound(KafkaError):
    """A topic to read does not exist (``telestack topics create`` makes the stack's topics)."""


class RecordRejected(KafkaError):
    """Kafka refuses this record whatever the state of the link (larger than message.max.bytes, invalid)."""


class InfluxError(TelestackError):
    """InfluxDB answered with an error status, or could not be reached. `status` is None without an answer."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class InfluxUnavailableError(InfluxError):
    """A transient failure: the request may succeed later. `retry_after_s` is InfluxDB's Retry-After, if any."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s
        self.timed_out = timed_out  # no answer within the timeout (InfluxDB slow), rather than refused or down


class InfluxRejectedError(InfluxError):
    """InfluxDB refused the data (bad line, type conflict, too large); `reason` is its error text."""

    def __init__(self, reason: str, *, status: int) -> None:
        super().__init__(f"InfluxDB rejected the write ({status}): {reason}", status=status)
        self.reason = reason


class InfluxQueryError(InfluxRejectedError):
    """InfluxDB could not run a Flux query; `reason` is its error text. Running it again as is will not help."""

    def __init__(self, reason: str, *, status: int = 200) -> None:
        InfluxError.__init__(self, f"InfluxDB could not run the query: {reason}", status=status)
        self.reason = reason


class InfluxAuthError(InfluxError):
    """The token was refused (401) or may not write/read this bucket (403). Not retried."""


class ServerError(TelestackError):
    """A native server could not be installed, started or reached."""

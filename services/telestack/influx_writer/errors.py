"""The exceptions of the influx-writer package, rooted at `TelestackError`.

    TelestackError
    └── InfluxWriterError
        ├── InfluxError                 InfluxDB answered with an error, or could not be reached
        │   ├── InfluxUnavailableError  5xx, 429, timeout, connection refused: retry later (may carry Retry-After)
        │   ├── InfluxRejectedError     400/413/422: the data itself was refused; carries InfluxDB's error text
        │   └── InfluxAuthError         401/403: the token is wrong or lacks permission; the writer stops
        ├── DeadLetterError             Kafka did not confirm dead letters (the batch is retried, not committed)
        ├── ProvisioningError           buckets, task or tokens could not be created or checked
        └── TransferError               an export or import failed (bad filter, unreadable file, schema conflict)

httpx errors are translated at the boundary in `telestack.influx_writer.influx_http`.
"""

from __future__ import annotations

from telestack.core.errors import TelestackError

__all__ = [
    "DeadLetterError",
    "InfluxAuthError",
    "InfluxError",
    "InfluxRejectedError",
    "InfluxUnavailableError",
    "InfluxWriterError",
    "ProvisioningError",
    "TransferError",
]


class InfluxWriterError(TelestackError):
    """Base of the influx-writer package's exceptions."""


class InfluxError(InfluxWriterError):
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


class InfluxAuthError(InfluxError):
    """The token was refused (401) or may not write/read this bucket (403). Not retried."""


class DeadLetterError(InfluxWriterError):
    """The DLQ did not confirm some dead letters; the batch is retried, not committed."""


class ProvisioningError(InfluxWriterError):
    """Buckets, the downsampling task or the tokens could not be provisioned."""


class TransferError(InfluxWriterError):
    """An export or an import could not be carried out."""

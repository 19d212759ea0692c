"""The exceptions of the influx-writer package, rooted at `TelestackError`.

    TelestackError
    ├── InfluxError                     (telestack.core.errors, re-exported here: the InfluxDB client is core's)
    └── InfluxWriterError
        ├── DeadLetterError             Kafka did not confirm dead letters (the batch is retried, not committed)
        ├── ProvisioningError           buckets, task or tokens could not be created or checked
        └── TransferError               an export or import failed (bad filter, unreadable file, schema conflict)

httpx errors are translated at the boundary in `telestack.core.influx_http`.
"""

from __future__ import annotations

from telestack.core.errors import (
    InfluxAuthError,
    InfluxError,
    InfluxRejectedError,
    InfluxUnavailableError,
    TelestackError,
)

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


class DeadLetterError(InfluxWriterError):
    """The DLQ did not confirm some dead letters; the batch is retried, not committed."""


class ProvisioningError(InfluxWriterError):
    """Buckets, the downsampling task or the tokens could not be provisioned."""


class TransferError(InfluxWriterError):
    """An export or an import could not be carried out."""

"""The exceptions of the CAN gateway, rooted at `TelestackError`.

TelestackError
└── CanGatewayError
    ├── DatabaseError       a DBC/KCD/ARXML file is missing or cannot be parsed (names the file and line)
    ├── MappingError        the mapping names a message or signal no database defines
    ├── DecodeFailure       one frame could not be decoded (short data, unknown multiplexer value);
    │                       counted per frame id, never fatal
    ├── SourceError         a CAN bus could not be opened or a log file could not be read
    ├── RawFormatError      a ``can.raw`` record is not in the telestack raw-frame encoding
    └── SpoolError          the on-disk spool cannot be written or read
"""

from __future__ import annotations

from telestack.core.errors import TelestackError

__all__ = [
    "CanGatewayError",
    "DatabaseError",
    "DecodeFailure",
    "MappingError",
    "RawFormatError",
    "SourceError",
    "SpoolError",
]


class CanGatewayError(TelestackError):
    """Base of every CAN gateway error."""


class DatabaseError(CanGatewayError):
    """A CAN database file could not be loaded."""


class MappingError(CanGatewayError):
    """The signal mapping refers to something the databases do not define."""


class DecodeFailure(CanGatewayError):
    """One frame could not be decoded; the gateway counts it and goes on."""


class SourceError(CanGatewayError):
    """A CAN bus or a log file could not be opened or read."""


class RawFormatError(CanGatewayError):
    """A raw-frame record is malformed or of an unknown version."""


class SpoolError(CanGatewayError):
    """The disk spool failed (disk full, permissions, corrupt segment)."""

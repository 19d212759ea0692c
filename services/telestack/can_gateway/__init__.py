"""The CAN gateway: python-can buses or recorded logs → cantools decoding → line protocol on Kafka ``telemetry``,
raw frames on ``can.raw``, with a bounded disk spool while Kafka is unreachable."""

from telestack.can_gateway.decoder import BusDecoder, Frame, compile_bus, decode_frames, frame_key, load_databases
from telestack.can_gateway.errors import (
    CanGatewayError,
    DatabaseError,
    DecodeFailure,
    MappingError,
    RawFormatError,
    SourceError,
    SpoolError,
)
from telestack.can_gateway.rawframes import decode_raw, encode_raw
from telestack.can_gateway.settings import CanGatewaySettings, GatewayOptions, MessageMapping

__all__ = [
    "BusDecoder",
    "CanGatewayError",
    "CanGatewaySettings",
    "DatabaseError",
    "DecodeFailure",
    "Frame",
    "GatewayOptions",
    "MappingError",
    "MessageMapping",
    "RawFormatError",
    "SourceError",
    "SpoolError",
    "compile_bus",
    "decode_frames",
    "decode_raw",
    "encode_raw",
    "frame_key",
    "load_databases",
]

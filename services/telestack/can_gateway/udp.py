"""Reading python-can's ``udp_multicast`` buses without ``bus.recv``: every waiting datagram at once.

The simulators and the end-to-end benchmark use ``udp_multicast`` as the virtual CAN wire. Through ``bus.recv``
each frame costs a ``select``, a ``recvmsg``, the timestamp's ancillary data, a msgpack unpack and a checked
``can.Message``; in a py-spy profile of the gateway at 27,000 frames/s that was 65 % of its samples, and the
kernel dropped 34 % of the frames at the socket. `UdpMulticastDrain` waits once, then reads every datagram
already queued without blocking and builds the frame tuples directly: about half the CPU per frame
(``python -m benchmarks.can --udp-only``, best of 3, five runs on the shared 2-core machine: 12.2-17.6 µs
through ``bus.recv``, 6.4-7.3 µs here; the one ``recvmsg`` per datagram left is about 4 µs of it, and Python
has no ``recvmmsg``). It reads the datagrams exactly as python-can 4.x does (`UdpMulticastBus`
``_recv_internal`` and `GeneralPurposeUdpMulticastBus.recv`): the same socket, the same timestamp (the kernel's
``SO_TIMESTAMPNS``, else ``SIOCGSTAMP``, else the clock), the same checks, and FD frames dropped on a classic
bus. A datagram python-can refuses (it raises ``CanOperationError``, which ended the source) is skipped,
counted in `UdpMulticastDrain.skipped` (the gateway's ``telestack_can_gateway_unreadable_input`` metric) and
logged once per kind.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from typing import Any

import msgpack

from telestack.can_gateway.decoder import BRS, ESI, EXTENDED, FD, Frame
from telestack.can_gateway.errors import SourceError
from telestack.can_gateway.rawframes import message_to_frame
from telestack.core.runtime import Logger

__all__ = ["UdpMulticastDrain", "fields_to_frame"]

# What python-can's `pack_message` writes; datagrams with exactly these fields take the short way below.
_PACKED_FIELDS = frozenset(
    (
        "timestamp",
        "arbitration_id",
        "is_extended_id",
        "is_remote_frame",
        "is_error_frame",
        "channel",
        "dlc",
        "data",
        "is_fd",
        "bitrate_switch",
        "error_state_indicator",
    )
)
_TIMESPEC = struct.Struct("@ll")  # struct timespec / timeval, as python-can reads them


def fields_to_frame(fields: Any, timestamp: float, fd: bool) -> Frame | None:
    """The frame `message_to_frame` makes of python-can's ``Message(check=True, **fields)`` received at
    `timestamp`; None for an FD frame on a classic bus (`fd` False), which python-can drops. Raises what
    python-can raises for fields it refuses (``TypeError``, ``ValueError``).

    A data frame as python-can packs it, with plain types and values its check accepts, is built here;
    anything else (remote and error frames, missing or unknown fields, odd types) goes through ``can.Message``.

    >>> fields_to_frame({"arbitration_id": 0x123, "is_extended_id": False, "data": b"\\x01"}, 1.5, fd=False)
    (1.5, 291, 0, b'\\x01')
    """
    if type(fields) is dict and fields.keys() == _PACKED_FIELDS:
        ident, extended, data = fields["arbitration_id"], fields["is_extended_id"], fields["data"]
        is_fd, brs, esi = fields["is_fd"], fields["bitrate_switch"], fields["error_state_indicator"]
        if (
            type(ident) is int
            and 0 <= ident < (0x20000000 if extended else 0x800)
            and type(data) is bytes
            and fields["dlc"] == len(data)
            and (len(data) <= 64 if is_fd else len(data) <= 8 and not (brs or esi))
            and not (fields["is_remote_frame"] or fields["is_error_frame"])
        ):
            if not is_fd:
                return (timestamp, ident | EXTENDED if extended else ident, 0, data)
            if not fd:
                return None
            flags = FD | (BRS if brs else 0) | (ESI if esi else 0)
            return (timestamp, ident | EXTENDED if extended else ident, flags, data)
    import can

    message = can.Message(check=True, **{**fields, "timestamp": timestamp})
    if message.is_fd and not fd:
        return None
    return message_to_frame(message)


class UdpMulticastDrain:
    """Frames from the socket of a python-can `UdpMulticastBus`, every waiting datagram per call of `read`."""

    def __init__(self, bus: Any, name: str, log: Logger) -> None:
        """Use `for_bus`, which checks that `bus` is one this class reads as python-can would."""
        from can import CanProtocol
        from can.interfaces.udp_multicast import bus as udp

        multicast = bus._multicast
        self.name = name
        self.log = log
        self.fd = bus.protocol is CanProtocol.CAN_FD
        self.skipped: dict[str, int] = {}  # datagrams python-can would refuse, by kind
        self._socket: socket.socket = multicast._socket
        self._max_buffer: int = multicast.max_buffer
        self._ancillary_size = socket.CMSG_SPACE(_TIMESPEC.size)
        self._so_timestampns: int = udp.SO_TIMESTAMPNS
        self._siocgstamp: int | None = udp.SIOCGSTAMP if udp.is_linux else None
        self._with_ancillary = bool(multicast.timestamp_nanosecond)

    @classmethod
    def for_bus(cls, bus: Any, name: str, log: Logger) -> UdpMulticastDrain | None:
        """A drain for `bus`, or None (with the reason in a debug log) if only ``bus.recv`` reads it right."""
        try:
            from can.interfaces.udp_multicast.bus import GeneralPurposeUdpMulticastBus, UdpMulticastBus
        except ImportError as exc:
            reason = f"python-can's udp_multicast interface is not importable ({exc})"
        else:
            multicast = getattr(bus, "_multicast", None)
            if type(bus) is not UdpMulticastBus:  # a subclass may read differently
                reason = f"the bus is a {type(bus).__name__}, not python-can's UdpMulticastBus"
            elif type(multicast) is not GeneralPurposeUdpMulticastBus:
                reason = "the bus has no GeneralPurposeUdpMulticastBus at bus._multicast (another python-can?)"
            elif not isinstance(getattr(multicast, "_socket", None), socket.socket):
                reason = "bus._multicast._socket is not a socket (another python-can?)"
            elif bus.filters is not None:
                reason = "the bus has can_filters, which python-can applies in bus.recv"
            else:
                try:
                    return cls(bus, name, log)
                except (AttributeError, ImportError) as exc:
                    reason = f"python-can's udp_multicast internals differ ({exc!r})"
        log.debug("udp_multicast bus read through bus.recv", bus=name, reason=reason)
        return None

    def read(self, batch: list[Frame], timeout: float, limit: int) -> None:
        """Wait up to `timeout` seconds for a datagram, then append the frames of up to `limit` waiting ones."""
        try:
            ready, _, _ = select.select([self._socket], [], [], timeout)  # as python-can waits
            if ready:
                self._drain(batch, limit)
        except OSError as exc:
            raise SourceError(f"cannot read udp_multicast bus {self.name}: {exc}") from exc

    def _drain(self, batch: list[Frame], limit: int) -> None:
        receive = self._receive_with_timestamp if self._with_ancillary else self._receive_then_stamp
        unpackb = msgpack.unpackb
        fd = self.fd
        append = batch.append
        for _ in range(limit):
            try:
                payload, timestamp = receive()
            except BlockingIOError:
                return
            except (ValueError, struct.error) as exc:  # python-can: CanOperationError, or struct.error
                self._skip("timestamp", exc)
                continue
            try:
                fields = unpackb(payload, raw=False)
            except Exception as exc:  # msgpack has many error types; python-can catches them all
                self._skip("msgpack", exc)
                continue
            try:
                frame = fields_to_frame(fields, timestamp, fd)
            except Exception as exc:  # the fields are not a valid can.Message
                self._skip("message", exc)
                continue
            if frame is not None:
                append(frame)

    def _receive_with_timestamp(self) -> tuple[bytes, float]:
        """A datagram and its ``SO_TIMESTAMPNS`` kernel timestamp; `BlockingIOError` if none is waiting."""
        payload, ancillary, _, _ = self._socket.recvmsg(self._max_buffer, self._ancillary_size, socket.MSG_DONTWAIT)
        if len(ancillary) != 1:
            raise ValueError(f"expected the timestamp alone as ancillary data, got {len(ancillary)} items")
        level, kind, data = ancillary[0]
        if level != socket.SOL_SOCKET or kind != self._so_timestampns:
            raise ValueError(f"ancillary data of level {level} type {kind}, not SO_TIMESTAMPNS")
        seconds, nanoseconds = _TIMESPEC.unpack(data)
        if nanoseconds >= 1e9:
            raise ValueError(f"timestamp nanoseconds out of range: {nanoseconds}")
        return payload, seconds + nanoseconds * 1.0e-9

    def _receive_then_stamp(self) -> tuple[bytes, float]:
        """Where ``SO_TIMESTAMPNS`` is refused: the datagram, then ``SIOCGSTAMP`` (Linux) or the clock."""
        payload, _ = self._socket.recvfrom(self._max_buffer, socket.MSG_DONTWAIT)
        if self._siocgstamp is not None:
            from fcntl import ioctl

            stamp = ioctl(self._socket.fileno(), self._siocgstamp, bytes(_TIMESPEC.size))
            seconds, microseconds = _TIMESPEC.unpack(stamp)
        else:
            now = time.time()
            seconds = int(now)
            microseconds = int((now - seconds) * 1000000)
        if microseconds >= 1e6:
            raise ValueError(f"timestamp microseconds out of range: {microseconds}")
        return payload, seconds + microseconds * 1e-6

    def _skip(self, kind: str, exc: Exception) -> None:
        count = self.skipped.get(kind, 0)
        self.skipped[kind] = count + 1
        if not count:
            self.log.warning(
                "udp_multicast datagram skipped (python-can cannot read it); logged once per kind, counted",
                bus=self.name,
                kind=kind,
                error=f"{type(exc).__name__}: {exc}",
            )

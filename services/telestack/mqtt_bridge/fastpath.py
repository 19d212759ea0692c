"""A paho client with a fast path for the bridge's two hot packets: PUBLISH in, PUBACK out.

Profiled under ``make bench-mqtt`` (a QoS 1 backlog), paho spent more CPU per message than the bridge's own
mapping and produce: one ``recv`` system call for the command byte, one per remaining-length byte and one for
the rest of every packet; an MQTT 5 ``Properties`` object built and parsed for every PUBLISH (almost always
without properties); an ``MQTTMessage``, two locks and a topic match per message; and one ``send`` system call
per PUBACK. `FastPathClient` keeps paho's protocol state machine and changes only that:

- reads are buffered: one ``recv`` of up to `RECV_BYTES` feeds paho's packet reader, which then takes its
  bytes from memory (`buffered` tells the caller's ``select`` loop that packets wait there);
- a QoS 0 or 1 PUBLISH without properties is decoded here, in a few slices, and handed to `on_publish_fast`
  as ``(topic, payload, mid, qos)``; anything else (QoS 2, properties such as a topic alias, a topic that is
  not UTF-8, a malformed packet) goes through paho's own ``_handle_publish`` and ``on_message`` as before;
- PUBACKs are collected by `ack` and written together by `flush_acks` (one packet, one ``send``), in the order
  they were acknowledged. Acks collected on a connection that has since closed are dropped, never sent on the
  next one: their packet ids belonged to the old connection, and the broker redelivers those messages.
"""

from __future__ import annotations

from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

__all__ = ["RECV_BYTES", "FastPathClient", "PublishCallback"]

# One recv reads up to this much, bytes (Mosquitto sends a backlog in segments of about this size).
RECV_BYTES = 256 * 1024
_PUBLISH = 0x30
_PUBACK = 0x40

PublishCallback = Callable[[str, bytes, int, int], None]


class FastPathClient(paho.Client):
    """`paho.Client` with buffered reads, a direct PUBLISH path and batched PUBACKs; see the module docstring."""

    on_publish_fast: PublishCallback | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._rbuf = bytearray()
        self._rbuf_sock: object = None  # the socket `_rbuf` was read from
        self._acks = bytearray()
        self._acks_sock: object = None  # the socket the collected acks are for

    # --- reads -------------------------------------------------------------------------------------------

    def buffered(self) -> int:
        """Bytes read from the socket that paho has not consumed yet (``select`` cannot see them)."""
        if self._rbuf_sock is not self._sock:
            return 0
        return len(self._rbuf)

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rbuf_sock is not self._sock:  # a new connection: bytes of the old one are void
            self._rbuf.clear()
            self._rbuf_sock = self._sock
        buf = self._rbuf
        if not buf:
            data = super()._sock_recv(RECV_BYTES)  # raises as paho expects (BlockingIOError, OSError)
            if len(data) <= bufsize:
                return data  # b"" (connection closed) included
            buf += data
        chunk = bytes(buf[:bufsize])
        del buf[:bufsize]
        return chunk

    # --- PUBLISH -----------------------------------------------------------------------------------------

    def _handle_publish(self) -> MQTTErrorCode:
        callback = self.on_publish_fast
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if callback is None or qos == 2:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        try:
            end = 2 + ((packet[0] << 8) | packet[1])
            topic = packet[2:end].decode("utf-8")
            mid = 0
            if qos:
                mid = (packet[end] << 8) | packet[end + 1]
                end += 2
            if self._protocol == MQTTProtocolVersion.MQTTv5:
                if packet[end] != 0:  # properties (a topic alias, user properties...): paho decodes them
                    return super()._handle_publish()
                end += 1
        except (IndexError, UnicodeDecodeError):
            return super()._handle_publish()  # paho reports the malformed packet or the odd topic its way
        if not topic:
            return super()._handle_publish()
        callback(topic, bytes(packet[end:]), mid, qos)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    # --- PUBACK ------------------------------------------------------------------------------------------

    def ack(self, mid: int, qos: int) -> MQTTErrorCode:
        """Collect the PUBACK of `mid` (QoS 1; other QoS as paho does); `flush_acks` sends what was collected."""
        if qos != 1 or not self._manual_ack:
            return super().ack(mid, qos)
        if self._acks_sock is not self._sock:
            self._acks.clear()
            self._acks_sock = self._sock
        self._acks += bytes((_PUBACK, 2, mid >> 8, mid & 0xFF))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def pending_acks(self) -> int:
        return len(self._acks) // 4 if self._acks_sock is self._sock else 0

    def flush_acks(self) -> None:
        """Queue the collected PUBACKs as one write and write what paho has queued."""
        acks = self._acks
        if not acks:
            return
        if self._acks_sock is not self._sock or self._sock is None:
            acks.clear()  # their connection is gone; the broker redelivers those messages
            return
        packet = bytes(acks)
        acks.clear()
        out = {"command": _PUBACK, "mid": 0, "qos": 1, "pos": 0, "to_process": len(packet), "packet": packet}
        self._out_packet.append({**out, "info": None})  # type: ignore[typeddict-item]
        self.loop_write()

"""A paho client with a fast path for the bridge's two hot packets: PUBLISH in, PUBACK out.

Profiled under ``make bench-mqtt`` (a QoS 1 backlog), paho spent more CPU per message than the bridge's own
mapping and produce: one ``recv`` system call for the command byte, one per remaining-length byte and one for
the rest of every packet; an MQTT 5 ``Properties`` object built and parsed for every PUBLISH (almost always
without properties); an ``MQTTMessage``, two locks and a topic match per message; and one ``send`` system call
per PUBACK. `FastPathClient` keeps paho's protocol state machine and changes only that:

- reads are buffered: one ``recv`` of up to `RECV_BYTES` holds many packets (`buffered` tells the caller's
  ``select`` loop that packets wait there);
- a QoS 0 or 1 PUBLISH without properties, whole in that buffer, is decoded here in a few slices and handed
  to `on_publish_fast` as ``(topic, payload, mid, qos)``; anything else (other packets, QoS 2, properties such
  as a topic alias, a topic that is not UTF-8, a malformed or partly received packet) goes through paho's own
  reader (which takes its bytes from the buffer), ``_handle_publish`` and ``on_message`` as before;
- PUBACKs are collected by `ack` and written together by `flush_acks` (one packet, one ``send``), in the order
  they were acknowledged. Acks collected on a connection that has since closed are dropped, never sent on the
  next one: their packet ids belonged to the old connection, and the broker redelivers those messages.
"""

from __future__ import annotations

from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.client import time_func as _now  # the clock paho's keepalive reads
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

    def _packet_read(self) -> MQTTErrorCode:
        """Read one packet: a whole QoS 0/1 PUBLISH in the buffer goes straight to `on_publish_fast`; anything
        else (another packet type, a packet not wholly read yet, paho halfway through one) to paho's reader."""
        callback = self.on_publish_fast
        if callback is None or self._in_packet["command"] != 0:
            return super()._packet_read()
        if self._rbuf_sock is not self._sock:
            self._rbuf.clear()
            self._rbuf_sock = self._sock
        buf = self._rbuf
        if not buf:
            try:
                data = super()._sock_recv(RECV_BYTES)
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError:  # paho's reader would end the same way (timeouts included)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            if not data:
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            buf += data
            with self._msgtime_mutex:
                self._last_bytes_received = _now()
        header = buf[0]
        if header & 0xF0 != _PUBLISH or header & 0x04:  # QoS 2 (or the invalid 3): paho
            return super()._packet_read()
        # Remaining length: 1 to 4 bytes, 7 bits each, least significant first.
        size = len(buf)
        length, shift, pos = 0, 0, 1
        while True:
            if pos >= size or pos > 4:
                return super()._packet_read()  # not all here yet (or malformed: paho says so)
            byte = buf[pos]
            length |= (byte & 0x7F) << shift
            shift += 7
            pos += 1
            if not byte & 0x80:
                break
        end = pos + length
        if end > size:
            return super()._packet_read()
        decoded = self._decode_publish(buf, pos, end, (header & 0x06) >> 1)
        if decoded is None:
            return super()._packet_read()  # paho decodes it (properties, odd topic, malformed)
        topic, mid, payload_at = decoded
        payload = bytes(buf[payload_at:end])
        del buf[:end]
        callback(topic, payload, mid, (header & 0x06) >> 1)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _decode_publish(self, packet: bytearray, start: int, end: int, qos: int) -> tuple[str, int, int] | None:
        """(topic, packet id, where the payload starts) of the PUBLISH in ``packet[start:end]``; None when paho
        should decode it instead: properties present, a topic that is empty (an alias) or not UTF-8, too short."""
        try:
            at = start + 2 + ((packet[start] << 8) | packet[start + 1])
            topic = packet[start + 2 : at].decode("utf-8")
            mid = 0
            if qos:
                mid = (packet[at] << 8) | packet[at + 1]
                at += 2
            if self._protocol == MQTTProtocolVersion.MQTTv5:
                if packet[at] != 0:
                    return None
                at += 1
        except (IndexError, UnicodeDecodeError):
            return None
        if not topic or at > end:
            return None
        return topic, mid, at

    def _handle_publish(self) -> MQTTErrorCode:
        callback = self.on_publish_fast
        qos = (self._in_packet["command"] & 0x06) >> 1
        if callback is None or qos == 2:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        decoded = self._decode_publish(packet, 0, len(packet), qos)
        if decoded is None:
            return super()._handle_publish()
        topic, mid, payload_at = decoded
        callback(topic, bytes(packet[payload_at:]), mid, qos)
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

"""FastPathClient: the bridge's PUBLISH-in / PUBACK-out fast path over paho, on a real socket pair.

The client's socket is one end of a socketpair; the test plays the broker on the other end with raw MQTT bytes.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from telestack.mqtt_bridge.fastpath import FastPathClient


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(topic: str, payload: bytes, mid: int, qos: int = 1, properties: bytes = b"") -> bytes:
    """An MQTT 5 PUBLISH packet."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name
    if qos:
        body += mid.to_bytes(2, "big")
    body += _varint(len(properties)) + properties + payload
    return bytes((0x30 | qos << 1,)) + _varint(len(body)) + body


Received = list[tuple[str, bytes, int, int, str]]


@pytest.fixture
def pair() -> Iterator[tuple[FastPathClient, socket.socket, Received]]:
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client = FastPathClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=MQTTProtocolVersion.MQTTv5)
    client.manual_ack_set(True)
    received: Received = []
    client.on_publish_fast = lambda topic, payload, mid, qos: received.append((topic, payload, mid, qos, "fast"))
    client.on_message = lambda c, u, msg: received.append((msg.topic, msg.payload, msg.mid, msg.qos, "paho"))
    client._sock = ours  # what a connect would have set
    yield client, broker, received
    ours.close()
    broker.close()


def _read_all(client: FastPathClient) -> None:
    for _ in range(1000):
        if client.loop_read() != paho.MQTT_ERR_SUCCESS:
            raise AssertionError("loop_read failed")
        if not client.buffered():
            return


def test_publishes_in_one_segment_each_reach_the_fast_path(
    pair: tuple[FastPathClient, socket.socket, Received],
) -> None:
    client, broker, received = pair
    packets = [publish_packet(f"dev/d{i}/report", b'{"v": %d}' % i, mid=i + 1) for i in range(50)]
    broker.sendall(b"".join(packets))
    _read_all(client)
    assert received == [(f"dev/d{i}/report", b'{"v": %d}' % i, i + 1, 1, "fast") for i in range(50)]


def test_a_packet_split_across_reads_is_put_together(pair: tuple[FastPathClient, socket.socket, Received]) -> None:
    client, broker, received = pair
    packet = publish_packet("dev/a/report", b"x" * 300, mid=7)
    broker.sendall(packet[:3])
    client.loop_read()
    assert received == []
    broker.sendall(packet[3:])
    _read_all(client)
    assert received == [("dev/a/report", b"x" * 300, 7, 1, "fast")]


def test_qos0_has_no_packet_id(pair: tuple[FastPathClient, socket.socket, Received]) -> None:
    client, broker, received = pair
    broker.sendall(publish_packet("dev/a/t", b"21.5", mid=0, qos=0))
    _read_all(client)
    assert received == [("dev/a/t", b"21.5", 0, 0, "fast")]


def test_properties_and_qos2_go_through_paho(pair: tuple[FastPathClient, socket.socket, Received]) -> None:
    client, broker, received = pair
    user_property = b"\x26" + b"\x00\x01k" + b"\x00\x01v"  # User Property k=v
    broker.sendall(publish_packet("dev/a/report", b"1", mid=3, properties=user_property))
    broker.sendall(publish_packet("dev/b/report", b"2", mid=4, qos=2))
    _read_all(client)
    assert received[0] == ("dev/a/report", b"1", 3, 1, "paho")
    # QoS 2: paho answers PUBREC and delivers the message on PUBREL, as without the fast path.
    assert broker.recv(64) == bytes((0x50, 2, 0, 4))


def test_acks_are_written_together_in_ack_order(pair: tuple[FastPathClient, socket.socket, Received]) -> None:
    client, broker, _ = pair
    for mid in (5, 3, 300):
        client.ack(mid, 1)
    assert client.pending_acks() == 3
    broker.setblocking(False)
    with pytest.raises(BlockingIOError):
        broker.recv(64)  # nothing is sent before flush_acks
    client.flush_acks()
    assert broker.recv(64) == bytes((0x40, 2, 0, 5, 0x40, 2, 0, 3, 0x40, 2, 1, 44))
    assert client.pending_acks() == 0


def test_acks_of_a_closed_connection_are_never_sent_on_the_next(
    pair: tuple[FastPathClient, socket.socket, Received],
) -> None:
    client, _, _ = pair
    client.ack(9, 1)
    ours2, broker2 = socket.socketpair()
    try:
        client._sock = ours2  # reconnected: packet id 9 belonged to the old connection
        assert client.pending_acks() == 0
        client.flush_acks()
        client.ack(10, 1)
        client.flush_acks()
        assert broker2.recv(64) == bytes((0x40, 2, 0, 10))
    finally:
        ours2.close()
        broker2.close()


def test_bytes_buffered_from_an_old_connection_are_dropped(
    pair: tuple[FastPathClient, socket.socket, Received],
) -> None:
    client, broker, received = pair
    first = publish_packet("dev/a/report", b"old", mid=1)
    broker.sendall(first + first[:4])  # a whole packet, and the start of another
    client.loop_read()
    assert client.buffered() == 4
    ours2, broker2 = socket.socketpair()
    try:
        ours2.setblocking(False)
        client._sock = ours2
        client._in_packet = {  # what paho's reconnect resets
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
        assert client.buffered() == 0
        broker2.sendall(publish_packet("dev/a/report", b"new", mid=1))
        _read_all(client)
        assert [r[1] for r in received] == [b"old", b"new"]
    finally:
        ours2.close()
        broker2.close()


def test_a_publish_whose_topic_overruns_it_is_left_to_paho(
    pair: tuple[FastPathClient, socket.socket, Received],
) -> None:
    """Topic length 16 in a 5-byte packet: never decoded from the next packet's bytes; paho refuses it."""
    client, broker, received = pair
    broker.sendall(bytes((0x32, 5, 0, 16)) + b"abc" + publish_packet("dev/a/report", b"1", mid=2))
    assert client.loop_read() != paho.MQTT_ERR_SUCCESS
    assert received == []


def test_the_paho_privates_the_fast_path_overrides_are_still_there() -> None:
    """The fast path overrides paho internals; pyproject pins the minor version, and this names what broke if not."""
    import inspect

    for name, parameters in {
        "_sock_recv": ["self", "bufsize"],
        "_packet_read": ["self"],
        "_handle_publish": ["self"],
    }.items():
        method = getattr(paho.Client, name, None)
        assert method is not None, f"paho.Client.{name} is gone: adapt telestack/mqtt_bridge/fastpath.py"
        assert list(inspect.signature(method).parameters) == parameters, f"paho.Client.{name} changed its signature"
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    for attribute in (
        "_sock",
        "_in_packet",
        "_protocol",
        "_manual_ack",
        "_last_bytes_received",
        "_msgtime_mutex",
        "_out_packet",
    ):
        assert hasattr(client, attribute), f"paho.Client has no {attribute}: adapt telestack/mqtt_bridge/fastpath.py"
    assert {"command", "packet"} <= set(client._in_packet)

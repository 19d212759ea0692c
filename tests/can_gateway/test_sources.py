"""Log replay through python-can's readers (every format) and live python-can buses."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import can
import pytest

from telestack.can_gateway.decoder import FD, Frame
from telestack.can_gateway.errors import SourceError
from telestack.can_gateway.settings import BusSettings, ReplaySettings
from telestack.can_gateway.sources import BusSource, LogReplaySource, open_bus, read_log
from tests.can_gateway.conftest import SESSION_BLF, SESSION_LOG
from tests.polling import wait_until


def _collect(source: LogReplaySource | BusSource, until_done: bool = True) -> dict[str, list[Frame]]:
    got: dict[str, list[Frame]] = {}
    lock = threading.Lock()

    def emit(bus: str, frames: list[Frame]) -> bool:
        with lock:
            got.setdefault(bus, []).extend(frames)
        return True

    stop = threading.Event()
    source.start(emit, stop)
    if until_done:
        source.join(30)
    assert source.error is None
    return got


def _same_content(a: list[Frame], b: list[Frame]) -> bool:
    return [(round(f[0], 6), f[1], f[3]) for f in a] == [(round(f[0], 6), f[1], f[3]) for f in b]


@pytest.mark.parametrize("suffix", [".asc", ".trc", ".csv", ".blf", ".log"])
def test_every_log_format_replays_the_same_frames(
    tmp_path: Path, session_frames: list[tuple[str, Frame]], suffix: str
) -> None:
    numbers = {"powertrain": 1, "chassis": 2, "battery": 3}
    path = tmp_path / f"session{suffix}"
    with can.Logger(str(path)) as writer:
        for message in can.LogReader(str(SESSION_LOG)):
            message.channel = numbers[message.channel]
            writer(message)
    channels = {"1": "powertrain", "2": "chassis", "3": "battery"}
    channels |= {f"can{n}": bus for n, bus in channels.items()}  # the candump writer names them canN
    replay = ReplaySettings(files=[path], speed=0, channels=channels)
    got = _collect(LogReplaySource(replay))
    expected: dict[str, list[Frame]] = {}
    for bus, frame in session_frames:
        expected.setdefault(bus, []).append(frame)
    if suffix == ".trc":  # python-can's TRC writer has no CAN FD: it skips those frames
        session_frames = [(bus, f) for bus, f in session_frames if not f[2] & FD]
    if suffix in (".asc", ".trc", ".csv"):  # these writers keep times relative or drop channels
        flat = sorted((f for frames in got.values() for f in frames), key=lambda f: f[0])
        origin = flat[0][0] - session_frames[0][1][0]
        ours = [(f[1], f[3]) for f in flat]
        assert ours == [(f[1], f[3]) for _, f in session_frames]
        assert all(abs((f[0] - origin) - e[1][0]) < 1e-5 for f, e in zip(flat, session_frames, strict=True))
    else:
        assert set(got) == set(expected)
        for bus in expected:
            assert _same_content(got[bus], expected[bus]), bus


def test_committed_blf_recording_holds_the_session(session_frames: list[tuple[str, Frame]]) -> None:
    frames = [frame for _, frame in read_log(SESSION_BLF)]
    assert _same_content(frames, [f for _, f in session_frames])


def test_replay_follows_recorded_time_scaled(tmp_path: Path) -> None:
    path = tmp_path / "two_seconds.log"
    path.write_text("".join(f"({1700000000 + i * 0.1:.6f}) can0 100#{i:016X}\n" for i in range(21)))
    started = time.monotonic()
    got = _collect(LogReplaySource(ReplaySettings(files=[path], speed=4)))
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 2.0  # 2 s recorded, played 4x faster
    assert len(got["can0"]) == 21


def test_missing_log_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        LogReplaySource(ReplaySettings(files=[tmp_path / "nope.log"]))


def test_bus_source_batches_frames_from_a_virtual_bus() -> None:
    settings = BusSettings(name="powertrain", interface="virtual", channel="test-bus-source")
    source = BusSource(settings)
    sender = can.Bus(interface="virtual", channel="test-bus-source")
    got: list[Frame] = []
    stop = threading.Event()
    source.start(lambda bus, frames: got.extend(frames) or True, stop)
    try:
        for i in range(300):
            sender.send(can.Message(arbitration_id=0x100 + i % 3, is_extended_id=False, data=i.to_bytes(2, "little")))
        wait_until(lambda: len(got) == 300, 10, what="300 frames")
        assert [f[3] for f in got] == [i.to_bytes(2, "little") for i in range(300)]
    finally:
        stop.set()
        source.join(5)
        sender.shutdown()


def test_unknown_interface_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match="cannot open CAN bus b1 \\(nonsense"):
        open_bus(BusSettings(name="b1", interface="nonsense", channel="x"))


def test_udp_multicast_buses_get_a_large_receive_buffer() -> None:
    # Regression: with the kernel's ~200 KiB default, a busy machine dropped up to 0.3 % of a saturated bus.
    import socket

    from telestack.can_gateway.settings import BusSettings
    from telestack.can_gateway.sources import open_bus

    bus = open_bus(BusSettings(name="b", interface="udp_multicast", channel="239.74.199.7", options={"port": 43991}))
    try:
        size = bus._multicast._socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert size > 1 << 20, size
    finally:
        bus.shutdown()


# --- udp_multicast buses: UdpMulticastDrain against python-can's own bus.recv ---------------------------------


def _udp_group() -> tuple[str, int]:
    """A multicast group and a UDP port of this test's own (xdist workers run side by side)."""
    import random

    from telestack.native.servers import free_udp_port

    return f"239.74.{random.randrange(100, 200)}.{random.randrange(1, 255)}", free_udp_port()


def _udp_settings(group: str, port: int, fd: bool = True, **options: object) -> BusSettings:
    return BusSettings(name="udp", interface="udp_multicast", channel=group, fd=fd, options={"port": port, **options})


def _recv_all(bus: can.BusABC, until_id: int) -> list[Frame | str]:
    """python-can's reading of every datagram up to the message with id `until_id`: its frame, or "refused"."""
    from telestack.can_gateway.rawframes import message_to_frame

    got: list[Frame | str] = []
    while True:
        try:
            message = bus.recv(5)
        except can.CanOperationError:
            got.append("refused")
            continue
        assert message is not None, f"python-can received {got} but not the id {until_id:#x} that ends them"
        got.append(message_to_frame(message))
        if message.arbitration_id == until_id:
            return got


VARIED = [
    can.Message(arbitration_id=0x123, is_extended_id=False, data=bytes(range(8))),
    can.Message(arbitration_id=0x18FF5010, is_extended_id=True, data=b"\x01\x02\x03"),
    can.Message(arbitration_id=0x000, is_extended_id=False, data=b""),
    can.Message(arbitration_id=0x7FF, is_extended_id=False, is_remote_frame=True, dlc=4),
    can.Message(arbitration_id=0x1FFFFFFF, is_extended_id=True, is_remote_frame=True, dlc=0),
    can.Message(arbitration_id=0x004, is_error_frame=True, data=bytes(8)),
    can.Message(arbitration_id=0x321, is_extended_id=False, is_fd=True, bitrate_switch=True, data=bytes(range(12))),
    can.Message(arbitration_id=0x1ABCDE, is_fd=True, error_state_indicator=True, data=bytes(range(64))),
    can.Message(arbitration_id=0x42, is_extended_id=False, is_fd=True, bitrate_switch=True, data=b""),
    can.Message(arbitration_id=0x43, is_extended_id=False, is_fd=True, error_state_indicator=True, data=bytes(7)),
    can.Message(arbitration_id=0x100, is_extended_id=False, data=b"\xff"),
]
# Messages python-can's receiving side refuses (its check), sent anyway (its sender does not check).
REFUSED = [
    can.Message(arbitration_id=0x800, is_extended_id=False, data=b"\x01"),  # 12 bits in a standard id
    can.Message(arbitration_id=0x20000000, is_extended_id=True, data=b""),  # 30 bits in an extended id
    can.Message(arbitration_id=0x101, is_extended_id=False, data=bytes(8), dlc=3),  # dlc != len(data)
    can.Message(arbitration_id=0x102, is_extended_id=False, data=bytes(9)),  # 9 bytes without FD
    can.Message(arbitration_id=0x103, is_extended_id=False, data=b"\x01", bitrate_switch=True),  # BRS without FD
]
LAST_ID = 0x7FE


def _until_kernel_timestamps(sender: can.BusABC, *receivers: can.BusABC) -> None:
    """Wait until the kernel stamps datagrams as they arrive. It switches that on for the whole host when a socket
    first asks, but not at once: until then a datagram is stamped when each socket reads it, so two readers see
    different times for the same datagram (seen: the first frame 18-700 µs apart in 3 of 20 runs)."""

    def same_stamp() -> bool:
        sender.send(can.Message(arbitration_id=0x7FD, is_extended_id=False, data=b"warm"))
        stamps = set()
        for bus in receivers:
            message = bus.recv(5)
            assert message is not None and message.arbitration_id == 0x7FD, message
            stamps.add(message.timestamp)
        return len(stamps) == 1

    wait_until(same_stamp, 10, what="the kernel stamping datagrams on arrival")


@pytest.mark.parametrize("timestamps", ["SO_TIMESTAMPNS", "SIOCGSTAMP"])
@pytest.mark.parametrize("fd", [True, False], ids=["fd-bus", "classic-bus"])
def test_udp_source_reads_every_datagram_as_python_can_does(fd: bool, timestamps: str) -> None:
    import socket

    from can.interfaces.udp_multicast.bus import SO_TIMESTAMPNS

    # Two sockets joined to one group get the same datagrams with the same kernel timestamps: one read by
    # python-can, one by the source's drain; every frame, flag, byte and timestamp must match exactly.
    group, port = _udp_group()
    settings = _udp_settings(group, port, fd=fd)
    ours, theirs = open_bus(settings), open_bus(settings)
    if timestamps == "SIOCGSTAMP":  # python-can's fallback where the socket refused SO_TIMESTAMPNS
        for bus in (ours, theirs):
            bus._multicast._socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 0)
            bus._multicast.timestamp_nanosecond = False
    source = BusSource(settings, ours)
    assert source.drain is not None
    sender = can.Bus(interface="udp_multicast", channel=group, port=port, fd=True)
    got: list[Frame] = []
    stop = threading.Event()
    try:
        _until_kernel_timestamps(sender, ours, theirs)
        for message in [*VARIED, *REFUSED, *VARIED]:
            sender.send(message)
        sender._multicast._socket.sendto(b"\xc1 not msgpack", (group, port))
        sender._multicast._socket.sendto(b"\x93\x01\x02\x03", (group, port))  # msgpack, a list
        sender.send(can.Message(arbitration_id=0x7FE, is_extended_id=False, data=b"end"))
        source.start(lambda bus, frames: got.extend(frames) or True, stop)
        expected = _recv_all(theirs, LAST_ID)
        wait_until(lambda: got and got[-1][1] == LAST_ID, 10, what="the last frame")
    finally:
        stop.set()
        source.join(5)
        sender.shutdown()
        theirs.shutdown()
    assert source.error is None
    assert got == [frame for frame in expected if frame != "refused"]
    assert len(got) == (2 * len(VARIED) + 1 if fd else 2 * 7 + 1)  # a classic bus drops the 4 FD frames
    assert source.drain.skipped == {"message": len(REFUSED) + 1, "msgpack": 1}
    assert expected.count("refused") == len(REFUSED) + 2


def test_fields_to_frame_builds_what_python_can_builds() -> None:
    # The short way (exact fields of pack_message, plain types) and can.Message for the rest, side by side.
    from can.interfaces.udp_multicast.utils import pack_message

    from telestack.can_gateway.rawframes import message_to_frame
    from telestack.can_gateway.udp import fields_to_frame

    packed = [msgpack_fields(pack_message(m)) for m in [*VARIED, *REFUSED]]
    odd: list[object] = [
        {"arbitration_id": 0x10, "data": b"\x01"},  # missing fields: python-can's defaults (extended id)
        {**packed[0], "dlc": None},  # python-can: dlc from the data
        {**packed[0], "dlc": 8.0},
        {**packed[0], "is_rx": False},
        {**packed[0], "arbitration_id": True},
        {**packed[0], "arbitration_id": -1},
        {**packed[1], "arbitration_id": 16.0},  # a float id: python-can accepts it; the frame key cannot
        {**packed[0], "data": [1, 2, 3, 4, 5, 6, 7, 8]},
        {**packed[0], "data": "text"},
        {**packed[0], "unknown": 1},
        {**packed[0], "check": False},
        {**packed[6], "is_remote_frame": True},
        {**packed[3], "is_error_frame": True},
        {**packed[0], "is_fd": 1, "bitrate_switch": 1},
        [1, 2, 3],
        None,
    ]
    for fields in [*packed, *odd]:
        for fd in (True, False):
            try:
                message = can.Message(check=True, **{**fields, "timestamp": 12.5})  # type: ignore[dict-item]
                expected: object = None if message.is_fd and not fd else message_to_frame(message)
            except Exception as exc:
                expected = type(exc)
            try:
                got: object = fields_to_frame(fields, 12.5, fd)
            except Exception as exc:
                got = type(exc)
            assert (got is not None and isinstance(got, type)) == isinstance(expected, type), (fields, fd, got)
            if not isinstance(expected, type):
                assert got == expected, (fields, fd)


def msgpack_fields(payload: bytes) -> dict[str, object]:
    import msgpack

    fields = msgpack.unpackb(payload, raw=False)
    assert isinstance(fields, dict)
    return fields


def test_garbage_on_the_group_does_not_stop_a_udp_source() -> None:
    # python-can's recv raises CanOperationError on a datagram it cannot unpack, which used to end the source.
    group, port = _udp_group()
    source = BusSource(_udp_settings(group, port))
    sender = can.Bus(interface="udp_multicast", channel=group, port=port)
    got: list[Frame] = []
    stop = threading.Event()
    source.start(lambda bus, frames: got.extend(frames) or True, stop)
    try:
        sender._multicast._socket.sendto(b"\xff\xfe garbage", (group, port))
        time.sleep(0.2)
        for i in range(10):
            sender.send(can.Message(arbitration_id=0x200, is_extended_id=False, data=bytes([i])))
        wait_until(lambda: len(got) == 10, 10, what="10 frames after the garbage")
        assert source.alive and source.error is None
        assert source.drain is not None and source.unreadable == {"msgpack": 1}
        assert [f[3] for f in got] == [bytes([i]) for i in range(10)]
    finally:
        stop.set()
        source.join(5)
        sender.shutdown()


def test_stop_ends_a_quiet_udp_source_within_its_timeout() -> None:
    group, port = _udp_group()
    source = BusSource(_udp_settings(group, port))
    stop = threading.Event()
    source.start(lambda bus, frames: True, stop)
    time.sleep(0.3)
    assert source.alive
    stopped = time.monotonic()
    stop.set()
    source.join(5)
    assert not source.alive and source.error is None
    assert time.monotonic() - stopped < 1.0  # waits at most 0.1 s per pass; slack for a busy machine


def test_udp_bus_with_can_filters_is_read_through_recv() -> None:
    # python-can filters in bus.recv: the drain would skip that, so such a bus keeps the generic loop.
    group, port = _udp_group()
    source = BusSource(_udp_settings(group, port, can_filters=[{"can_id": 0x200, "can_mask": 0x7FF}]))
    sender = can.Bus(interface="udp_multicast", channel=group, port=port)
    got: list[Frame] = []
    stop = threading.Event()
    source.start(lambda bus, frames: got.extend(frames) or True, stop)
    try:
        assert source.drain is None
        for ident in (0x100, 0x200, 0x300, 0x200):
            sender.send(can.Message(arbitration_id=ident, is_extended_id=False, data=b"\x01"))
        wait_until(lambda: len(got) == 2, 10, what="the 2 frames the filter passes")
        time.sleep(0.2)
        assert [f[1] for f in got] == [0x200, 0x200]
    finally:
        stop.set()
        source.join(5)
        sender.shutdown()

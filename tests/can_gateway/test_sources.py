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

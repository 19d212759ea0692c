"""Where frames come from: live python-can buses and recorded logs, each read in its own thread.

A source hands batches of frames of one bus to an `emit(bus, frames)` callable (the gateway's queue), so the
gateway thread only decodes and produces. `BusSource` wraps any python-can interface; `LogReplaySource` plays
log files back at recorded speed, scaled, or as fast as possible.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from telestack.can_gateway.decoder import Frame
from telestack.can_gateway.errors import SourceError
from telestack.can_gateway.rawframes import iter_candump, message_to_frame
from telestack.can_gateway.settings import BusSettings, ReplaySettings
from telestack.can_gateway.udp import UdpMulticastDrain
from telestack.core.runtime import Logger, get_logger

__all__ = ["BusSource", "Emit", "FrameSource", "LogReplaySource", "open_bus", "read_log"]

Emit = Callable[[str, list[Frame]], bool]  # returns False when the gateway is stopping

BATCH_FRAMES = 512
BATCH_S = 0.02  # a live frame waits at most this long in its source before the gateway sees it


class FrameSource(ABC):
    """A thread that reads frames and emits them in batches per bus."""

    name: str

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.frames_read = 0
        self.unreadable: dict[str, int] = {}  # input skipped as unreadable, by kind (written by the thread)
        self._thread: threading.Thread | None = None

    def start(self, emit: Emit, stop: threading.Event) -> None:
        def target() -> None:
            try:
                self.run(emit, stop)
            except BaseException as exc:  # reported by the gateway, which decides what to do
                self.error = exc
            finally:
                self.close()

        self._thread = threading.Thread(target=target, name=f"can-source-{self.name}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    @abstractmethod
    def run(self, emit: Emit, stop: threading.Event) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the bus or file; called in the source's thread when it ends."""


def open_bus(settings: BusSettings) -> Any:
    """A python-can bus for `settings`; `SourceError` naming the bus if python-can refuses."""
    import can

    kwargs: dict[str, Any] = {"interface": settings.interface, "fd": settings.fd, **settings.options}
    if settings.channel is not None:
        kwargs["channel"] = settings.channel
    if settings.bitrate is not None:
        kwargs["bitrate"] = settings.bitrate
    if settings.data_bitrate is not None:
        kwargs["data_bitrate"] = settings.data_bitrate
    try:
        bus = can.Bus(**kwargs)
    except (can.CanError, ImportError, OSError, ValueError, TypeError) as exc:
        raise SourceError(
            f"cannot open CAN bus {settings.name} ({settings.interface}, channel {settings.channel}): {exc}"
        ) from exc
    if settings.interface == "udp_multicast":
        _enlarge_receive_buffer(bus)
    return bus


# A saturated 1 Mbit/s bus is ~8,000 datagrams/s: the default ~200 KiB buffer overflows in a few tens of ms
# when the machine is busy, and the kernel drops frames before we read them (seen under load: up to 0.3 %).
UDP_RECEIVE_BUFFER_BYTES = 4 << 20


def _enlarge_receive_buffer(bus: Any) -> None:
    """Best effort (capped by net.core.rmem_max); python-can keeps the socket in a private attribute."""
    sock = getattr(getattr(bus, "_multicast", None), "_socket", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER_BYTES)


class BusSource(FrameSource):
    """A live python-can bus. The bus is opened at construction, so a bad interface fails at start.

    A ``udp_multicast`` bus is read by `UdpMulticastDrain` (every waiting datagram at once, about half the
    CPU of ``bus.recv`` per frame); every other interface through ``bus.recv``, one frame per call.
    """

    def __init__(self, settings: BusSettings, bus: Any | None = None, *, log: Logger | None = None) -> None:
        super().__init__()
        self.name = settings.name
        self.settings = settings
        self.log: Logger = log if log is not None else get_logger("can-gateway")
        self.bus = bus if bus is not None else open_bus(settings)
        udp = settings.interface == "udp_multicast"
        self.drain = UdpMulticastDrain.for_bus(self.bus, self.name, self.log) if udp else None
        if self.drain is not None:
            self.unreadable = self.drain.skipped

    def run(self, emit: Emit, stop: threading.Event) -> None:
        read = self.drain.read if self.drain is not None else self._read_one
        batch: list[Frame] = []
        deadline = 0.0
        while not stop.is_set():
            was_empty = not batch
            timeout = 0.1 if was_empty else max(0.0, deadline - time.monotonic())
            read(batch, timeout, BATCH_FRAMES - len(batch))
            if was_empty and batch:
                deadline = time.monotonic() + BATCH_S
            if batch and (len(batch) >= BATCH_FRAMES or time.monotonic() >= deadline):
                self.frames_read += len(batch)
                if not emit(self.name, batch):
                    return
                batch = []
        if batch:
            self.frames_read += len(batch)
            emit(self.name, batch)

    def _read_one(self, batch: list[Frame], timeout: float, limit: int) -> None:
        """Any interface: wait up to `timeout` seconds for one message."""
        message = self.bus.recv(timeout)
        if message is not None:
            batch.append(message_to_frame(message))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # shutting down a broken bus must not mask why it broke
            self.bus.shutdown()


def read_log(path: Path, reader: str = "auto") -> Iterator[tuple[str | None, Frame]]:
    """(channel, frame) for every frame of a log file; python-can reads every format, telestack's own
    reader reads candump ``.log`` files about 4x faster."""
    if not path.is_file():
        raise SourceError(f"log file {path} does not exist")
    if reader == "auto" and path.suffix.lower() == ".log":
        with open(path, encoding="ascii", errors="replace") as file:
            yield from iter_candump(file, str(path))
        return
    import can

    try:
        log_reader = can.LogReader(str(path))
    except (ValueError, OSError) as exc:
        raise SourceError(f"cannot read log {path}: {exc}") from exc
    to_frame = message_to_frame
    try:
        with log_reader:
            for message in log_reader:
                channel = message.channel
                yield (None if channel is None else str(channel)), to_frame(message)
    except SourceError:
        raise
    except Exception as exc:  # each reader has its own parse errors
        raise SourceError(f"cannot read log {path}: {exc}") from exc


class LogReplaySource(FrameSource):
    """Log files played back: `speed` 1 = as recorded, 2 = twice as fast, 0 = as fast as possible."""

    def __init__(self, settings: ReplaySettings) -> None:
        super().__init__()
        self.settings = settings
        self.name = "replay"
        for path in settings.files:
            if not Path(path).is_file():
                raise SourceError(f"log file {path} does not exist")

    def bus_of(self, channel: str | None) -> str:
        if channel is None:
            return self.settings.default_bus
        return self.settings.channels.get(channel, channel)

    def run(self, emit: Emit, stop: threading.Event) -> None:
        settings = self.settings
        while True:
            for path in settings.files:
                if not self._play(Path(path), emit, stop):
                    return
            if not settings.loop or stop.is_set():
                return

    def _play(self, path: Path, emit: Emit, stop: threading.Event) -> bool:
        speed = self.settings.speed
        batches: dict[str, list[Frame]] = {}
        buses: dict[str | None, str] = {}
        pending = 0
        start_wall = start_ts = None

        def flush() -> bool:
            nonlocal pending
            for bus, frames in batches.items():
                if frames and not emit(bus, frames):
                    return False
            self.frames_read += pending
            batches.clear()
            pending = 0
            return True

        for channel, frame in read_log(path, self.settings.reader):
            if speed > 0:
                if start_wall is None:
                    start_wall, start_ts = time.monotonic(), frame[0]
                due = start_wall + (frame[0] - start_ts) / speed  # type: ignore[operator]
                wait = due - time.monotonic()
                if wait > 0.002:
                    if not flush():
                        return False
                    if stop.wait(wait):
                        return False
            bus = buses.get(channel)
            if bus is None:
                bus = buses[channel] = self.bus_of(channel)
            batch = batches.get(bus)
            if batch is None:
                batch = batches[bus] = []
            batch.append(frame)
            pending += 1
            if pending >= BATCH_FRAMES and (stop.is_set() or not flush()):
                return False
        return flush()

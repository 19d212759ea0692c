"""CAN load: frames of ``bench_seq.dbc`` on several buses, each frame carrying its sequence number on its bus.

Runs as its own process (``python -m benchmarks.e2e.can_load``) so its CPU is its own and it does not share a
GIL with what it measures. Frames go out as python-can ``udp_multicast`` datagrams (the gateway's live-bus
input between processes) with a multicast TTL of 0: the kernel loops them back to this machine's listeners
and never puts them on a network interface.

Every second one JSON line of progress goes to stdout; at the end the send time of every frame is written to
``<out>/can-<bus>.times`` (float64 seconds since the epoch, indexed by sequence number) and a last JSON line
gives the totals.
"""

from __future__ import annotations

import argparse
import array
import json
import signal
import socket
import struct
import sys
import time
from pathlib import Path

import msgpack

__all__ = ["BENCH_FRAME_ID", "main"]

BENCH_FRAME_ID = 0x123  # BenchSeq in bench_seq.dbc
GROUP = "239.74.163.2"  # python-can's default IPv4 group
TICK_S = 0.002


def _packer() -> tuple[dict[str, object], object]:
    # The dictionary python-can's udp_multicast pack_message builds, refilled per frame.
    template: dict[str, object] = {
        "timestamp": 0.0,
        "arbitration_id": BENCH_FRAME_ID,
        "is_extended_id": False,
        "is_remote_frame": False,
        "is_error_frame": False,
        "channel": None,
        "dlc": 8,
        "data": b"",
        "is_fd": False,
        "bitrate_switch": False,
        "error_state_indicator": False,
    }
    return template, msgpack.Packer(use_bin_type=True).pack


def _say(payload: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def run(buses: list[str], ports: list[int], rate: float, duration_s: float, out: Path, stop_file: Path | None) -> int:
    """Send `rate` frames/s on each bus for `duration_s` (0: until SIGTERM or `stop_file` exists)."""
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, struct.pack("@I", 0))  # this host only
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    template, pack = _packer()
    pad = struct.Struct("<II")
    times = [array.array("d") for _ in buses]
    sent = [0] * len(buses)
    send_errors = 0
    started = time.time()
    next_report = started + 1.0
    sendto = sock.sendto
    now = time.time
    while not stop:
        t = now()
        elapsed = t - started
        if duration_s and elapsed >= duration_s:
            break
        due = int(rate * elapsed) + 1
        # Interleave the buses frame by frame, as independent buses would.
        while sent[-1] < due and not stop:
            for index, port in enumerate(ports):
                if sent[index] >= due:
                    continue
                seq = sent[index]
                send_time = now()
                template["timestamp"] = send_time
                template["data"] = pad.pack(seq, index)
                try:
                    sendto(pack(template), (GROUP, port))  # type: ignore[operator]
                except OSError:
                    send_errors += 1  # a full socket buffer: the frame is sent again, as a bus would retry
                    continue
                times[index].append(send_time)
                sent[index] = seq + 1
        if t >= next_report:
            _say({"t": t, "sent": dict(zip(buses, sent, strict=True))})
            next_report += 1.0
            if stop_file is not None and stop_file.exists():
                break
        time.sleep(TICK_S)
    out.mkdir(parents=True, exist_ok=True)
    for bus, bus_times in zip(buses, times, strict=True):
        with open(out / f"can-{bus}.times", "wb") as file:
            bus_times.tofile(file)
    _say(
        {
            "done": True,
            "sent": dict(zip(buses, sent, strict=True)),
            "seconds": round(time.time() - started, 3),
            "send_errors": send_errors,
        }
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e.can_load", description=__doc__)
    parser.add_argument("--buses", required=True, help="bus names, comma-separated")
    parser.add_argument("--ports", required=True, help="UDP port of each bus, comma-separated")
    parser.add_argument("--rate", type=float, required=True, help="frames per second per bus")
    parser.add_argument("--duration", type=float, default=0, help="seconds (0: until SIGTERM or --stop-file)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the send times")
    parser.add_argument("--stop-file", type=Path, default=None, help="stop once this file exists")
    args = parser.parse_args(argv)
    buses = args.buses.split(",")
    ports = [int(p) for p in args.ports.split(",")]
    if len(buses) != len(ports):
        parser.error("--buses and --ports need as many entries")
    return run(buses, ports, args.rate, args.duration, args.out, args.stop_file)


if __name__ == "__main__":
    raise SystemExit(main())

"""MQTT load: N devices publishing ``{"seq": n, "ts": µs, "v": x}`` at QoS 1 on ``bench/<device>/data``.

Runs as its own process (``python -m benchmarks.e2e.mqtt_load``). Devices behave as careful real ones do:
a message counts as sent once the broker acknowledged it (PUBACK); until then it is kept, and published
again after a reconnect (the broker restarted, the network dropped). The device's own timestamp goes in
the payload, so a message published twice is one point in InfluxDB.

Every second one JSON line of progress goes to stdout; at the end the publish time of every message is
written to ``<out>/mqtt-<device>.times`` (float64 s since the epoch, indexed by sequence number) and a last
JSON line gives the totals, including messages never acknowledged.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["main"]

TICK_S = 0.005


def _say(payload: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


class Connection:
    """One MQTT connection publishing for some devices, with its own outbox of unacknowledged messages.

    The outbox is the main thread's alone: a message leaves it once one of its publications is acknowledged
    (paho marks the `MQTTMessageInfo` published on PUBACK), and everything still in it is published again
    after a reconnect.
    """

    def __init__(self, host: str, port: int, username: str | None, password: str | None, client_id: str) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.outbox: dict[tuple[str, int], tuple[bytes, list[paho.MQTTMessageInfo]]] = {}
        self.connected = threading.Event()
        self.connections = 0
        self.republish_due = False
        self.republished = 0
        self.client.connect_async(host, port, keepalive=15)
        self.client.loop_start()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            return
        self.connections += 1
        if self.connections > 1:
            self.republish_due = True
        self.connected.set()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connected.clear()

    def _publish(self, key: tuple[str, int], payload: bytes) -> None:
        info = self.client.publish(f"bench/{key[0]}/data", payload, qos=1)
        if info.rc == paho.MQTT_ERR_SUCCESS:
            self.outbox[key][1].append(info)

    def send(self, device: str, seq: int, payload: bytes) -> None:
        self.outbox[(device, seq)] = (payload, [])
        if self.connected.is_set():
            self._publish((device, seq), payload)

    def sweep(self) -> None:
        """Forget what the broker acknowledged; after a reconnect, publish the rest again."""
        done = [key for key, (_, infos) in self.outbox.items() if any(i.is_published() for i in infos)]
        for key in done:
            del self.outbox[key]
        if self.republish_due and self.connected.is_set():
            self.republish_due = False
            for key, (payload, _) in list(self.outbox.items()):
                self._publish(key, payload)
                self.republished += 1

    def unacked(self) -> int:
        self.sweep()
        return len(self.outbox)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run(args: argparse.Namespace) -> int:
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    password = os.environ.get("TELESTACK_MQTT__PASSWORD")
    devices = [f"{args.prefix}-{i:04d}" for i in range(args.devices)]
    n_conn = max(1, min(args.connections, len(devices)))
    connections = [
        Connection(args.host, args.port, args.username, password, f"{args.prefix}-pub-{i}") for i in range(n_conn)
    ]
    for connection in connections:
        if not connection.connected.wait(20):
            _say({"error": "could not connect to the MQTT broker"})
            return 1
    owner = {device: connections[i % n_conn] for i, device in enumerate(devices)}
    times = {device: array.array("d") for device in devices}
    total_rate = args.rate * len(devices)
    sent = 0
    started = time.time()
    next_report = started + 1.0
    while not stop:
        t = time.time()
        elapsed = t - started
        if args.duration and elapsed >= args.duration:
            break
        due = int(total_rate * elapsed) + 1
        while sent < due:
            device = devices[sent % len(devices)]
            seq = sent // len(devices)
            now = time.time()
            ts_us = int(now * 1_000_000)
            payload = b'{"seq": %d, "ts": %d, "v": %.3f}' % (seq, ts_us, (seq % 1000) / 10)
            owner[device].send(device, seq, payload)
            times[device].append(ts_us / 1_000_000)
            sent += 1
        for connection in connections:
            connection.sweep()
        if t >= next_report:
            _say({"t": t, "sent": sent, "unacked": sum(c.unacked() for c in connections)})
            next_report += 1.0
            if args.stop_file is not None and args.stop_file.exists():
                break
        time.sleep(TICK_S)
    # A device keeps what the broker has not acknowledged; give it time to get through.
    deadline = time.monotonic() + args.drain_timeout
    while time.monotonic() < deadline and any(c.unacked() for c in connections):
        time.sleep(0.05)
    args.out.mkdir(parents=True, exist_ok=True)
    for device, device_times in times.items():
        with open(args.out / f"mqtt-{device}.times", "wb") as file:
            device_times.tofile(file)
    _say(
        {
            "done": True,
            "sent": sent,
            "per_device": {d: len(t) for d, t in times.items()},
            "unacked": sum(c.unacked() for c in connections),
            "republished": sum(c.republished for c in connections),
            "reconnects": sum(max(0, c.connections - 1) for c in connections),
            "seconds": round(time.time() - started, 3),
        }
    )
    for connection in connections:
        connection.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e.mqtt_load", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username", default=None, help="(password from TELESTACK_MQTT__PASSWORD)")
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="messages per second per device")
    parser.add_argument("--connections", type=int, default=8, help="MQTT connections shared by the devices")
    parser.add_argument("--prefix", default="dev", help="device id prefix")
    parser.add_argument("--duration", type=float, default=0, help="seconds (0: until SIGTERM or --stop-file)")
    parser.add_argument("--drain-timeout", type=float, default=60, help="seconds to wait for the last PUBACKs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stop-file", type=Path, default=None)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

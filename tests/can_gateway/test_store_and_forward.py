"""Kafka killed in the middle of a stream and started again: every frame arrives, in order.

Uses a Kafka server of its own (never the shared one, which other tests use at the same time).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import can

from telestack.can_gateway.gateway import Gateway
from telestack.can_gateway.rawframes import decode_raw
from telestack.core.kafka import Record, ensure_topics
from telestack.core.lineproto import parse_lines
from telestack.core.settings import KafkaSettings
from telestack.native.servers import KafkaServer
from tests.can_gateway.conftest import gateway_settings
from tests.harness import RunningService
from tests.kafka_reader import read_topic
from tests.polling import wait_until


def _first_seen(counters: list[int]) -> list[int]:
    seen: set[int] = set()
    return [c for c in counters if not (c in seen or seen.add(c))]  # type: ignore[func-returns-value]


def test_kafka_outage_mid_stream_loses_nothing_and_keeps_order(
    own_kafka: KafkaServer, tmp_path: Path, unique: str, run_gateway: Callable[..., RunningService[Gateway]]
) -> None:
    kafka = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{own_kafka.port}",
        linger_ms=5,
        topics={"telemetry": "telemetry", "can_raw": "can.raw"},  # type: ignore[arg-type]
        config={"reconnect.backoff.max.ms": "500"},
    )
    ensure_topics(kafka, {"telemetry": 3, "can.raw": 3})
    names = ("powertrain", "chassis")
    buses = [{"name": n, "interface": "virtual", "channel": f"{unique}-{n}"} for n in names]
    settings = gateway_settings(
        kafka,
        tmp_path / "spool",
        buses=buses,
        key="vehicle_bus",
        spool={"stall_timeout_s": 1.5, "retry_interval_s": 0.5, "segment_bytes": 65_536},
    )
    running = run_gateway(settings)
    gateway = running.service
    senders = {n: can.Bus(interface="virtual", channel=f"{unique}-{n}") for n in names}
    stop_sending = threading.Event()
    sent = {n: 0 for n in names}

    def send() -> None:  # ~1,000 frames/s per bus, a counter in each frame
        while not stop_sending.is_set():
            for name, bus in senders.items():
                for _ in range(10):
                    data = sent[name].to_bytes(8, "little")
                    bus.send(can.Message(arbitration_id=0x110, is_extended_id=False, data=data))
                    sent[name] += 1
            time.sleep(0.01)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        wait_until(lambda: gateway.outbox.stats.delivered_records > 5, 30, what="records delivered before the outage")
        own_kafka.kill()
        wait_until(lambda: not gateway.outbox.link_up, 30, what="the gateway noticing the outage")
        wait_until(lambda: len(gateway.outbox.spool) > 20, 30, what="records spooled to disk")
        spooled_during_outage = len(gateway.outbox.spool)
        assert list((tmp_path / "spool").glob("*.spool"))
        own_kafka.start()
        own_kafka.wait_ready(120)
        wait_until(lambda: gateway.outbox.link_up, 60, what="the gateway seeing Kafka again")
        time.sleep(1.0)  # keep streaming a little after the recovery
    finally:
        stop_sending.set()
        sender.join(5)
    wait_until(lambda: gateway.stats.frames >= sum(sent.values()), 30, what="every frame read")
    wait_until(lambda: gateway.outbox.idle(), 60, what="the spool drained")
    assert running.stop() == 0
    for bus in senders.values():
        bus.shutdown()
    # >= 1: on a loaded machine a delivery can also stall past stall_timeout_s after the restart, a second
    # (correctly spooled) outage; what counts is below: every frame once, in order
    assert spooled_during_outage > 20 and gateway.outbox.stats.outages >= 1
    assert not list((tmp_path / "spool").glob("*.spool"))  # drained and confirmed: nothing left to resend
    total = sum(sent.values())
    raw = read_topic(kafka, "can.raw", lambda got: _unique_frames(got) >= total, timeout_s=90)
    for name in names:
        records = sorted((r for r in raw if r.key == f"ved-01/{name}".encode()), key=lambda r: r.offset)
        counters = [int.from_bytes(f[3], "little") for r in records for f in decode_raw(r.value)]
        assert _first_seen(counters) == list(range(sent[name])), f"{name}: frames missing or out of order"
    telemetry = read_topic(kafka, "telemetry", lambda got: _unique_lines(got) >= total, timeout_s=90)
    for name in names:
        records = sorted((r for r in telemetry if r.key == f"ved-01/{name}".encode()), key=lambda r: r.offset)
        # VehicleSpeed (0.01 km/h per bit) carries the low 16 bits of the frame counter.
        speeds = [round(p.fields["VehicleSpeed"] * 100) for r in records for p in parse_lines(r.value.decode())]
        assert _first_seen(speeds) == [c & 0xFFFF for c in range(sent[name])], f"{name}: lines missing or out of order"


def _unique_frames(records: list[Record]) -> int:
    return len({(r.key, f[3]) for r in records for f in decode_raw(r.value)})


def _unique_lines(records: list[Record]) -> int:
    return len({(r.key, line) for r in records for line in r.value.split(b"\n")})

"""The gateway loop: frames from the sources → decoded lines on ``telemetry`` and raw frames on ``can.raw``.

One thread (the caller's) owns decoding, batching and the `Outbox`; each source reads in its own thread and
hands over batches through a bounded queue (a full queue slows a replay down instead of growing memory).
Lines are batched per Kafka key and raw frames per bus, up to `batch_lines` / `batch_bytes` or `batch_ms`.
Kafka record timestamps are left to the producer (now): the frame times are in the lines, and a backfilled
session with old record timestamps would fall out of Kafka's retention at once.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

from prometheus_client import Counter

from telestack.can_gateway.aggregate import Aggregator
from telestack.can_gateway.databases import DatabaseWatcher, DecoderSet
from telestack.can_gateway.decoder import Frame, decode_frames, describe_key
from telestack.can_gateway.metrics import GatewayMetrics, id_label
from telestack.can_gateway.outbox import Outbox
from telestack.can_gateway.rawframes import ENCODING, encode_raw
from telestack.can_gateway.settings import GatewayOptions
from telestack.can_gateway.sources import FrameSource
from telestack.can_gateway.spool import OutRecord
from telestack.core.lineproto import Point, format_point
from telestack.core.runtime import Check, Logger, Shutdown, get_logger
from telestack.core.service import ServiceBase
from telestack.core.settings import TopicSettings

__all__ = ["Gateway", "GatewayStats"]

QUEUE_BATCHES = 256
RAW_FRAME_MAX_BYTES = 14 + 64


@dataclass(slots=True)
class GatewayStats:
    """What the loop counted (also published as metrics); keys of the dicts are (bus, frame key)."""

    frames: int = 0
    lines: int = 0
    unknown: dict[tuple[str, int], int] = field(default_factory=dict)
    failed: dict[tuple[str, int], int] = field(default_factory=dict)
    telemetry_records: int = 0
    raw_records: int = 0


@dataclass(slots=True)
class _LineBatch:
    lines: list[str] = field(default_factory=list)
    bytes: int = 0
    first_ts: float = 0.0
    started: float = 0.0


@dataclass(slots=True)
class _RawBatch:
    frames: list[Frame] = field(default_factory=list)
    started: float = 0.0


class Gateway(ServiceBase):
    """The can-gateway service: `run` reads, decodes and sends until shutdown, then drains into the spool."""

    name = "can-gateway"

    def __init__(
        self,
        options: GatewayOptions,
        topics: TopicSettings,
        outbox: Outbox,
        sources: list[FrameSource],
        decoders: DecoderSet,
        *,
        log: Logger | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.options = options
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        self.topics = topics
        self.outbox = outbox
        self.sources = sources
        self.decoders = decoders
        self.log: Logger = log if log is not None else get_logger("can-gateway")
        self.stats = GatewayStats()
        self.watcher = DatabaseWatcher(decoders, options.reload_interval_s, log)
        self.failed_source: FrameSource | None = None
        self._queue: queue.Queue[tuple[str, list[Frame]]] = queue.Queue(QUEUE_BATCHES)
        self._stop_sources = threading.Event()
        self._lines: dict[str, _LineBatch] = {}
        self._raw: dict[str, _RawBatch] = {}
        self._labelled: dict[str, set[int]] = {}
        self._raw_limit = max(1, options.batch_bytes // RAW_FRAME_MAX_BYTES)
        self._batch_s = options.batch_ms / 1000
        self._vehicle_key = options.vehicle.encode()
        self._published_dropped = 0
        self._published_unreadable: dict[tuple[str, str], int] = {}
        self._aggregators: dict[str, Aggregator] = {}
        self._grace_s = options.aggregation.grace_s
        self._ran = False

    # --- the loop ---
    def run(self, shutdown: Shutdown) -> int:
        """Run until `shutdown` is set or every source ended (replays); returns the exit status."""
        self._ran = True
        self.watcher.start()
        for source in self.sources:
            source.start(self._emit, self._stop_sources)
        next_publish = 0.0
        try:
            while not shutdown.is_set():
                try:
                    bus, frames = self._queue.get(timeout=0.05)
                    self.process(bus, frames)
                    for _ in range(64):  # take what is queued without sleeping in between
                        bus, frames = self._queue.get_nowait()
                        self.process(bus, frames)
                except queue.Empty:
                    pass
                now = time.monotonic()
                self.flush(now, force=False)
                self.outbox.pump()
                fresh = self.watcher.take()
                if fresh is not None:
                    self.decoders = fresh
                    self.metrics.dbc_reloads.labels("ok").inc()
                if now >= next_publish:
                    self.publish_metrics()
                    next_publish = now + 1.0
                if not any(source.alive for source in self.sources) and self._queue.empty():
                    break
        finally:
            self._stop_sources.set()
            self.watcher.stop()
            for source in self.sources:
                source.join(2.0)
            while not self._queue.empty():
                bus, frames = self._queue.get_nowait()
                self.process(bus, frames)
            self.flush(time.monotonic(), force=True)
            left = self.outbox.close(10.0 if shutdown.is_set() else 60.0)
            self.publish_metrics()
            self.log.info(
                "gateway stopped",
                frames=self.stats.frames,
                lines=self.stats.lines,
                left_in_spool=left,
            )
        for source in self.sources:
            if source.error is not None:
                self.failed_source = source
                self.log.error("source failed", source=source.name, error=str(source.error))
                return 1
        return 0

    def _emit(self, bus: str, frames: list[Frame]) -> bool:
        while not self._stop_sources.is_set():
            try:
                self._queue.put((bus, frames), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    # --- one batch of frames ---
    def process(self, bus: str, frames: list[Frame]) -> None:
        decoder = self.decoders.for_bus(bus)
        lines: list[str] = []
        unknown: dict[int, int] = {}
        failed: dict[int, int] = {}
        decode_frames(decoder, frames, lines, unknown, failed)
        stats = self.stats
        stats.frames += len(frames)
        stats.lines += len(lines)
        self.metrics.frames.labels(bus).inc(len(frames))
        if unknown:
            self._count(bus, unknown, stats.unknown, self.metrics.unknown_frames)
            if self.options.forward_unknown:
                lines.extend(self._unknown_lines(bus, frames, unknown))
        if failed:
            self._count(bus, failed, stats.failed, self.metrics.decode_failures)
        if self.options.aggregation.interval_s > 0:
            lines = self._aggregate(bus, lines, frames[-1][0])
        self._add_lines(bus, lines, frames[0][0])
        if self.options.raw:
            raw = self._raw.get(bus)
            if raw is None:
                raw = self._raw[bus] = _RawBatch(started=time.monotonic())
            raw.frames.extend(frames)
            if len(raw.frames) >= self._raw_limit:
                self._send_raw(bus, self._raw.pop(bus))

    def _aggregate(self, bus: str, lines: list[str], newest_ts: float) -> list[str]:
        aggregator = self._aggregators.get(bus)
        if aggregator is None:
            settings = self.options.aggregation
            aggregator = self._aggregators[bus] = Aggregator(settings.interval_s, settings.functions)
        out = aggregator.add_lines(lines)
        out.extend(aggregator.flush_before(round((newest_ts - self._grace_s) * 1e9)))
        self._dead_letter_rejected(bus, aggregator)
        return out

    def _dead_letter_rejected(self, bus: str, aggregator: Aggregator) -> None:
        """Lines (or windows) the aggregator refused go to the dead-letter topic with the reason, one each."""
        for line, reason in aggregator.take_rejected():
            self.metrics.dead_letters.labels(bus, "aggregation").inc()
            self.log.warning("line refused by the aggregator; dead-lettered", bus=bus, error=reason)
            headers = [
                ("reason", b"aggregation"),
                ("detail", reason[:1000].encode()),
                ("source", b"can-gateway"),
                ("vehicle", self._vehicle_key),
                ("bus", bus.encode()),
            ]
            self.outbox.submit(
                OutRecord(
                    self.topics.dlq,
                    f"{self.options.vehicle}/{bus}".encode(),
                    line.encode(),
                    headers,
                    frames=0,
                    first_ts=time.time(),
                )
            )

    def _add_lines(self, bus: str, lines: list[str], first_ts: float) -> None:
        now = time.monotonic()
        if lines:
            self.metrics.lines.labels(bus).inc(len(lines))
            key = self.options.vehicle if self.options.key == "vehicle" else f"{self.options.vehicle}/{bus}"
            batch = self._lines.get(key)
            if batch is None:
                batch = self._lines[key] = _LineBatch(first_ts=first_ts, started=now)
            batch.lines.extend(lines)
            batch.bytes += sum(map(len, lines)) + len(lines)
            if len(batch.lines) >= self.options.batch_lines or batch.bytes >= self.options.batch_bytes:
                self._send_lines(key, self._lines.pop(key))

    def flush(self, now: float, force: bool) -> None:
        """Send the batches older than `batch_ms` (all of them, and open aggregation windows, if `force`)."""
        if force:
            for bus, aggregator in self._aggregators.items():
                self._add_lines(bus, aggregator.flush_all(), time.time())
                self._dead_letter_rejected(bus, aggregator)
        for key in [k for k, b in self._lines.items() if force or now - b.started >= self._batch_s]:
            self._send_lines(key, self._lines.pop(key))
        for bus in [k for k, b in self._raw.items() if force or now - b.started >= self._batch_s]:
            self._send_raw(bus, self._raw.pop(bus))

    def _send_lines(self, key: str, batch: _LineBatch) -> None:
        headers = [("vehicle", self._vehicle_key), ("source", b"can-gateway")]
        self.outbox.submit(
            OutRecord(
                self.topics.telemetry,
                key.encode(),
                "\n".join(batch.lines).encode(),
                headers,
                frames=len(batch.lines),
                first_ts=batch.first_ts,
            )
        )
        self.stats.telemetry_records += 1

    def _send_raw(self, bus: str, batch: _RawBatch) -> None:
        frames = batch.frames
        for start in range(0, len(frames), self._raw_limit):
            part = frames[start : start + self._raw_limit]
            self.outbox.submit(
                OutRecord(
                    self.topics.can_raw,
                    f"{self.options.vehicle}/{bus}".encode(),
                    encode_raw(part),
                    [("vehicle", self._vehicle_key), ("bus", bus.encode()), ("encoding", ENCODING.encode())],
                    frames=len(part),
                    first_ts=part[0][0],
                )
            )
            self.stats.raw_records += 1

    def _count(self, bus: str, counts: dict[int, int], total: dict[tuple[str, int], int], metric: Counter) -> None:
        seen = self._labelled.setdefault(bus, set())
        for key, n in counts.items():
            total[(bus, key)] = total.get((bus, key), 0) + n
            metric.labels(bus, id_label(key, seen)).inc(n)

    def _unknown_lines(self, bus: str, frames: list[Frame], unknown: dict[int, int]) -> list[str]:
        tags = {"vehicle": self.options.vehicle, "bus": bus}
        return [
            format_point(
                Point(
                    "can_unknown",
                    {**tags, "id": describe_key(key)},
                    {"data": data.hex().upper(), "dlc": len(data)},
                    round(ts * 1_000_000) * 1000,
                )
            )
            for ts, key, _flags, data in frames
            if key in unknown
        ]

    def publish_metrics(self) -> None:
        spool, metrics = self.outbox.spool, self.metrics
        metrics.spool_depth.set(len(spool))
        metrics.spool_bytes.set(spool.size_bytes)
        oldest = spool.oldest_created()
        metrics.spool_age.set(0 if oldest is None else max(0.0, time.time() - oldest))
        metrics.kafka_up.set(1 if self.outbox.link_up else 0)
        dropped = spool.dropped_frames
        if dropped > self._published_dropped:
            metrics.spool_dropped_frames.inc(dropped - self._published_dropped)
            self._published_dropped = dropped
        for source in self.sources:
            for kind, count in dict(source.unreadable).items():  # a copy: the source's thread adds kinds
                published = self._published_unreadable.get((source.name, kind), 0)
                if count > published:
                    metrics.unreadable_input.labels(source.name, kind).inc(count - published)
                    self._published_unreadable[(source.name, kind)] = count

    def _close(self) -> None:
        if not self._ran:  # `run` drains the outbox itself on its way out
            self.outbox.close(0)

    def health(self) -> list[Check]:
        return [Check.of("gateway", self._link_health)]

    def _link_health(self) -> tuple[bool, str]:
        spool = self.outbox.spool
        if not self.outbox.link_up:
            return False, f"Kafka unreachable; {len(spool)} records spooled"
        return True, f"{self.stats.frames} frames, {len(spool)} records spooled"

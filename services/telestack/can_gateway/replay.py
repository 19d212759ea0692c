"""``telestack can-replay``: decode a session again, later, with a corrected DBC; or export it as a candump log.

Reads the raw archive (``can.raw``, from its beginning up to its end when the command starts, optionally one
vehicle and/or bus) or a log file, decodes every frame with the databases and mapping of the ``can_gateway``
settings, and writes the lines to the ``telemetry`` topic (the default: InfluxDB overwrites the old points,
same series and timestamps), to stdout (``--output -``) or to a file. ``--export-candump FILE`` writes the
frames as a candump ``-l`` log (channel = bus name), sorted by time.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from telestack.can_gateway.databases import DecoderSet
from telestack.can_gateway.decoder import Frame, decode_frames
from telestack.can_gateway.errors import RawFormatError, SourceError
from telestack.can_gateway.rawframes import ENCODING, candump_line, decode_raw
from telestack.can_gateway.settings import CanGatewaySettings, GatewayOptions
from telestack.can_gateway.sources import read_log
from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.kafka import KafkaProducer
from telestack.core.runtime import configure_logging, get_logger
from telestack.core.settings import KafkaSettings
from telestack.core.topic_reader import read_to_end

__all__ = ["ReplayResult", "configure", "iter_raw_archive", "replay", "run"]

Batch = tuple[str, str, list[Frame]]  # (vehicle, bus, frames)


def iter_raw_archive(
    settings: KafkaSettings,
    *,
    vehicle: str | None = None,
    bus: str | None = None,
    timeout_s: float = 30.0,
    skipped: list[str] | None = None,
) -> Iterator[Batch]:
    """Every batch of the raw topic from its beginning to its end at the time of the call.

    Records that are not in the raw encoding are skipped (their description appended to `skipped`).
    """
    topic = settings.topics.can_raw
    for record in read_to_end(settings, topic, purpose="can-replay", stall_timeout_s=timeout_s):
        where = f"partition {record.partition} offset {record.offset}"
        encoding = record.header("encoding") or ENCODING
        if encoding != ENCODING:
            if skipped is not None:
                skipped.append(f"{where}: encoding {encoding}")
            continue
        record_vehicle = record.header("vehicle") or ""
        record_bus = record.header("bus") or ""
        if (vehicle is not None and record_vehicle != vehicle) or (bus is not None and record_bus != bus):
            continue
        try:
            frames = decode_raw(record.value)
        except RawFormatError as exc:
            if skipped is not None:
                skipped.append(f"{where}: {exc}")
            continue
        yield record_vehicle, record_bus, frames


def iter_log(path: Path, options: GatewayOptions, reader: str = "auto") -> Iterator[Batch]:
    replay = options.replay
    batch: list[Frame] = []
    current: str | None = None
    for channel, frame in read_log(path, reader):
        bus = replay.default_bus if channel is None else replay.channels.get(channel, channel)
        if bus != current and batch:
            yield options.vehicle, current or replay.default_bus, batch
            batch = []
        current = bus
        batch.append(frame)
        if len(batch) >= 1000:
            yield options.vehicle, bus, batch
            batch = []
    if batch:
        yield options.vehicle, current or replay.default_bus, batch


class ReplayResult:
    def __init__(self) -> None:
        self.frames = 0
        self.lines = 0
        self.unknown: dict[tuple[str, int], int] = {}
        self.failed: dict[tuple[str, int], int] = {}
        self.skipped: list[str] = []


def replay(
    batches: Iterator[Batch],
    options: GatewayOptions,
    *,
    lines_out: Any = None,
    producer: KafkaProducer | None = None,
    telemetry_topic: str = "telemetry",
    candump: TextIO | None = None,
    decode: bool = True,
    result: ReplayResult | None = None,
) -> ReplayResult:
    """Decode `batches` and send the lines to `lines_out` (a text file) and/or `producer`; export frames to
    `candump`. Decoders are built per vehicle, so archived sessions of several cars keep their vehicle tag."""
    result = result or ReplayResult()
    decoders: dict[str, DecoderSet] = {}
    exported: list[tuple[float, str, Frame]] = []
    for vehicle, bus, frames in batches:
        result.frames += len(frames)
        if candump is not None:
            exported.extend((frame[0], bus, frame) for frame in frames)
        if not decode:
            continue
        decoder_set = decoders.get(vehicle)
        if decoder_set is None:
            decoder_set = decoders[vehicle] = DecoderSet(options.model_copy(update={"vehicle": vehicle or "vehicle"}))
        lines: list[str] = []
        unknown: dict[int, int] = {}
        failed: dict[int, int] = {}
        decode_frames(decoder_set.for_bus(bus), frames, lines, unknown, failed)
        for key, n in unknown.items():
            result.unknown[(bus, key)] = result.unknown.get((bus, key), 0) + n
        for key, n in failed.items():
            result.failed[(bus, key)] = result.failed.get((bus, key), 0) + n
        result.lines += len(lines)
        if lines and lines_out is not None:
            lines_out.write("\n".join(lines) + "\n")
        if lines and producer is not None:
            for start in range(0, len(lines), 2000):
                producer.produce(
                    telemetry_topic,
                    "\n".join(lines[start : start + 2000]),
                    key=vehicle,
                    headers=[("vehicle", vehicle), ("source", "can-replay")],
                )
    if candump is not None:
        exported.sort(key=lambda item: item[0])
        for _, bus, frame in exported:
            candump.write(candump_line(frame, bus) + "\n")
    return result


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        default="kafka",
        help="'kafka' (the can.raw topic, default) or a log file (.log, .asc, .blf, .trc, .csv)",
    )
    parser.add_argument("--vehicle", default=None, help="only this vehicle's frames (can.raw source)")
    parser.add_argument("--bus", default=None, help="only this bus's frames (can.raw source)")
    parser.add_argument(
        "--output",
        default="telemetry",
        help="where decoded lines go: 'telemetry' (Kafka, default), '-' (stdout), a file, or 'none'",
    )
    parser.add_argument("--export-candump", type=Path, default=None, help="also write the frames as a candump log")
    add_settings_arguments(parser, CanGatewaySettings)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(CanGatewaySettings, args)
    with configure_logging(settings.log, "can-replay"):
        return _run(args, settings)


def _run(args: argparse.Namespace, settings: CanGatewaySettings) -> int:
    log = get_logger("can-replay")
    options = settings.can_gateway
    result = ReplayResult()
    if args.source == "kafka":
        batches = iter_raw_archive(settings.kafka, vehicle=args.vehicle, bus=args.bus, skipped=result.skipped)
    else:
        path = Path(args.source)
        if not path.is_file():
            raise SourceError(f"--source {path}: no such file (use 'kafka' for the can.raw topic)")
        batches = iter_log(path, options, options.replay.reader)
    producer = KafkaProducer(settings.kafka) if args.output == "telemetry" else None
    lines_out: Any = None
    close_out = False
    if args.output == "-":
        lines_out = sys.stdout
    elif args.output not in ("telemetry", "none"):
        lines_out = open(args.output, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        close_out = True
    candump = open(args.export_candump, "w", encoding="ascii") if args.export_candump else None  # noqa: SIM115
    try:
        replay(
            batches,
            options,
            lines_out=lines_out,
            producer=producer,
            telemetry_topic=settings.kafka.topics.telemetry,
            candump=candump,
            decode=args.output != "none",
            result=result,
        )
    finally:
        if close_out:
            lines_out.close()
        if candump is not None:
            candump.close()
        left = producer.close(60) if producer is not None else 0
    log.info(
        "replayed",
        frames=result.frames,
        lines=result.lines,
        unknown_frames=sum(result.unknown.values()),
        decode_failures=sum(result.failed.values()),
        skipped_records=len(result.skipped),
        unconfirmed=left,
    )
    return 1 if left else 0

"""``telestack export``: a time range of the raw or downsampled bucket → Parquet or CSV, streamed."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.durations import duration_seconds
from telestack.core.influx_http import InfluxHttp
from telestack.influx_writer.errors import TransferError
from telestack.influx_writer.export import ExportQuery, FileFormat, export_range
from telestack.influx_writer.settings import InfluxToolSettings
from telestack.influx_writer.time_range import parse_time

__all__ = ["configure", "file_format", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", type=Path, help="file to write (.parquet or .csv)")
    parser.add_argument("--start", required=True, help="range start: RFC 3339, or -2h (before now)")
    parser.add_argument("--stop", default="now", help="range end, excluded (default: now)")
    parser.add_argument("--downsampled", action="store_true", help="read the downsampled bucket instead of the raw one")
    parser.add_argument("--bucket", default=None, help="read this bucket (overrides --downsampled)")
    parser.add_argument("--measurement", action="append", default=[], help="keep this measurement (repeatable)")
    parser.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="keep this tag value (repeatable)"
    )
    parser.add_argument("--field", action="append", default=[], help="keep this field (repeatable)")
    parser.add_argument("--format", choices=["parquet", "csv"], default=None, help="default: from the file extension")
    parser.add_argument("--chunk", default="1h", help="time span read per query (default 1h)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_settings_arguments(parser, InfluxToolSettings)


def file_format(path: Path, explicit: str | None) -> FileFormat:
    chosen = explicit or path.suffix.lower().lstrip(".")
    if chosen not in ("parquet", "csv"):
        raise TransferError(f"cannot tell the format of {path}: name it .parquet or .csv, or pass --format")
    return "parquet" if chosen == "parquet" else "csv"


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(InfluxToolSettings, args)
    now_ns = time.time_ns()
    tags: list[tuple[str, str]] = []
    for item in args.tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TransferError(f"--tag {item!r}: expected KEY=VALUE")
        tags.append((key, value))
    bucket = args.bucket or (
        settings.influx_writer.storage.downsampled_bucket if args.downsampled else settings.influx.bucket
    )
    query = ExportQuery(
        bucket=bucket,
        start_ns=parse_time(args.start, now_ns=now_ns),
        stop_ns=parse_time(args.stop, now_ns=now_ns),
        measurements=tuple(args.measurement),
        tags=tuple(tags),
        fields=tuple(args.field),
        chunk_ns=duration_seconds(args.chunk) * 10**9 or 3600 * 10**9,
    )
    if query.stop_ns <= query.start_ns:
        raise TransferError("--stop must be after --start")
    api = InfluxHttp(settings.influx, gzip_level=0)
    total_s = (query.stop_ns - query.start_ns) / 1e9
    with tqdm(
        total=total_s, unit="s", unit_scale=True, desc=f"export {bucket}", disable=args.no_progress, file=sys.stderr
    ) as bar:
        try:
            stats = export_range(api, query, args.output, file_format(args.output, args.format), progress=bar)
        finally:
            api.close()
    sys.stdout.write(
        f"{stats.rows:,} rows to {args.output} "
        f"({len(stats.schema.tags)} tag and {len(stats.schema.fields)} field columns)\n"
    )
    return 0

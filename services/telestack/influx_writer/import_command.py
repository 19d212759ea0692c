"""``telestack import``: write a ``telestack export`` file (Parquet or CSV) into a bucket."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.influx_http import InfluxHttp
from telestack.influx_writer.export_command import file_format
from telestack.influx_writer.importer import import_file
from telestack.influx_writer.settings import InfluxToolSettings

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="file written by telestack export (.parquet or .csv)")
    parser.add_argument("--bucket", default=None, help="bucket to write into (default: influx.bucket)")
    parser.add_argument("--tags", default="", help="CSV only: comma-separated tag columns (Parquet files record them)")
    parser.add_argument("--format", choices=["parquet", "csv"], default=None, help="default: from the file extension")
    parser.add_argument("--batch-lines", type=int, default=5_000, help="lines per write request (default 5000)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_settings_arguments(parser, InfluxToolSettings)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(InfluxToolSettings, args)
    bucket = args.bucket or settings.influx.bucket
    tags = [name for name in args.tags.split(",") if name]
    api = InfluxHttp(settings.influx, gzip_level=1)
    with tqdm(unit="pt", unit_scale=True, desc=f"import {bucket}", disable=args.no_progress, file=sys.stderr) as bar:
        try:
            stats = import_file(
                api,
                args.input,
                file_format(args.input, args.format),
                bucket=bucket,
                tag_columns=tags,
                batch_lines=args.batch_lines,
                progress=bar,
            )
        finally:
            api.close()
    sys.stdout.write(f"{stats.points:,} points from {args.input} into {bucket}\n")
    return 0

"""``telestack influx-init``: create (or bring up to date) the raw and downsampled buckets and the scoped tokens,
and delete the downsampling task earlier versions created. Needs the operator token in ``TELESTACK_INFLUX__TOKEN``;
idempotent."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.influx_http import InfluxHttp
from telestack.influx_writer.provisioning import Provisioner, ProvisionResult
from telestack.influx_writer.settings import InfluxToolSettings

__all__ = ["configure", "run", "write_tokens_file"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokens-file",
        type=Path,
        default=None,
        help="write the scoped tokens there as INFLUX_WRITER_TOKEN=..., INFLUX_READ_TOKEN=... and "
        "INFLUX_DOWNSAMPLER_TOKEN=... (mode 0600)",
    )
    add_settings_arguments(parser, InfluxToolSettings)


def write_tokens_file(path: Path, result: ProvisionResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(
            "# written by telestack influx-init: tokens scoped to the telestack buckets\n"
            f"INFLUX_WRITER_TOKEN={result.writer_token}\n"
            f"INFLUX_READ_TOKEN={result.reader_token}\n"
            f"INFLUX_DOWNSAMPLER_TOKEN={result.downsampler_token}\n"
        )
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(InfluxToolSettings, args)
    api = InfluxHttp(settings.influx, gzip_level=0)
    try:
        result = Provisioner(api, settings.influx, settings.influx_writer.storage).run()
    finally:
        api.close()
    if args.tokens_file is not None:
        write_tokens_file(args.tokens_file, result)
    out = sys.stdout
    for change in result.changes or ["nothing to change: buckets and tokens are up to date"]:
        out.write(f"{change}\n")
    buckets = ", ".join(f"{name} ({bucket_id})" for name, bucket_id in result.buckets.items())
    out.write(f"buckets: {buckets}\n")
    if args.tokens_file is not None:
        out.write(f"tokens written to {args.tokens_file}\n")
    return 0

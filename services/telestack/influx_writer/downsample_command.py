"""``telestack downsample``: aggregate the raw bucket into the downsampled one, window after window, never
overlapping itself (see `telestack.influx_writer.downsampling`). Needs a token that reads the raw bucket and
reads and writes the downsampled one (``INFLUX_DOWNSAMPLER_TOKEN`` of ``telestack influx-init``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime

from telestack.core.backoff import Backoff
from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.influx_http import InfluxHttp
from telestack.core.runtime import Logger, silent_logger
from telestack.core.service import run_service
from telestack.influx_writer.downsampling import Downsampler
from telestack.influx_writer.settings import DownsamplerSettings

__all__ = ["build_downsampler", "configure", "run"]


def _timestamp(text: str) -> int:
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time like 2026-11-30T12:00:00Z") from exc


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--once", action="store_true", help="aggregate the windows due now, then exit (instead of running on)"
    )
    parser.add_argument(
        "--redo",
        nargs=2,
        type=_timestamp,
        metavar=("START", "STOP"),
        default=None,
        help="aggregate the windows of [START, STOP) again (points later than the late-data policy), then exit",
    )
    add_settings_arguments(parser, DownsamplerSettings)


def build_downsampler(
    settings: DownsamplerSettings,
    api: InfluxHttp,
    log: Logger | None = None,
    sleep: Callable[[float], bool] | None = None,
) -> Downsampler:
    """The downsampler on `api` (which it closes when closed)."""
    options = settings.downsampler
    return Downsampler(
        api,
        raw_bucket=settings.influx.bucket,
        storage=settings.influx_writer.storage,
        backoff=Backoff(options.retry_initial_ms / 1000, options.retry_max_ms / 1000),
        max_window_attempts=options.max_window_attempts,
        query_timeout_s=options.query_timeout_s,
        sleep=sleep,
        log=log,
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(DownsamplerSettings, args)
    token = settings.influx.require_token()

    def build(log: Logger) -> Downsampler:
        return build_downsampler(settings, InfluxHttp(settings.influx, token=token, gzip_level=0), log)

    if args.redo is None and not args.once:
        return run_service("downsample", settings, build, http=settings.downsampler.http)
    with build(silent_logger()) as downsampler:
        if args.redo is not None:
            done = downsampler.redo(*args.redo)
            sys.stdout.write(f"aggregated {len(done)} windows again\n")
        else:
            result = downsampler.run_pass()
            sys.stdout.write(
                f"aggregated {len(result.new)} new windows, {len(result.late)} again for late data, "
                f"skipped {len(result.skipped)}\n"
            )
    return 0

"""``telestack influx-writer``: Kafka ``telemetry`` → InfluxDB, commit after write, bad lines to the DLQ."""

from __future__ import annotations

import argparse

from telestack.core.backoff import Backoff
from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.core.influx_http import InfluxHttp
from telestack.core.kafka import KafkaProducer
from telestack.core.runtime import Logger, get_logger
from telestack.core.service import run_service
from telestack.core.topics import require_topics
from telestack.influx_writer.adaptive import write_sizer
from telestack.influx_writer.dead_letters import DeadLetterQueue
from telestack.influx_writer.flusher import Flusher
from telestack.influx_writer.metrics import WriterMetrics
from telestack.influx_writer.service import WriterService
from telestack.influx_writer.settings import WriterSettings

__all__ = ["build_writer", "configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, WriterSettings)


def build_writer(settings: WriterSettings, log: Logger | None = None) -> WriterService:
    """The writer and what it owns (InfluxDB client, dead-letter producer, flusher thread), from settings."""
    log = log if log is not None else get_logger("influx-writer")
    token = settings.influx.require_token()
    options = settings.influx_writer
    require_topics(settings.kafka, [settings.kafka.topics.telemetry, settings.kafka.topics.dlq])
    sink = InfluxHttp(settings.influx, token=token, gzip_level=options.gzip_level)
    producer = KafkaProducer(settings.kafka)
    metrics = WriterMetrics()
    flusher = Flusher(
        sink,
        DeadLetterQueue(producer, settings.kafka.topics.dlq),
        Backoff(options.retry_initial_ms / 1000, options.retry_max_ms / 1000),
        max_in_flight=options.max_in_flight,
        concurrency=options.write_concurrency,
        log=log,
        sizer=write_sizer(settings, metrics),
        metrics=metrics,
    ).start()
    return WriterService(settings, flusher, log=log, closing=[producer.close, sink.close])


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(WriterSettings, args)
    settings.influx.require_token()  # a missing token stops here, before anything is served
    return run_service(
        "influx-writer", settings, lambda log: build_writer(settings, log), http=settings.influx_writer.http
    )
